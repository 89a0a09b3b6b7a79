"""What the scale tests share: worker processes on one store, a ledger of runs, and the checks.

A ``Scale`` is one store (the run's database, the shared Redis, or a private server) plus a
directory of ledger files. Workers and the store-side helpers (``tests/support/scale_ops.py``)
are child processes with the same environment, so the test process itself never talks to the store.
"""

from __future__ import annotations

import json
import re
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import Child, Children, wait_until
from tests.support.scale_tasks import Ledger

SETTINGS = "tests.support.worker_settings"
SUCCESSFUL = "SUCCESSFUL"
WORKER_LOST = "tandem.exceptions.WorkerLost"
#: A store parameter for ``scale``: the run's database, and Redis once (in the SQLite run).
STORES = ["database", pytest.param("redis", marks=pytest.mark.redis)]

#: Private servers the restart tests can start, each in the run of its kind.
PRIVATE = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
    pytest.param("redis", marks=pytest.mark.redis),
]


BANNER = re.compile(r"^tandem worker (\S+)", re.MULTILINE)
# A driver's message may span lines ("Connection refused\n\tIs the server running …").
#: A back-off after a store error: in the claim loop, or at start (a worker started while the
#: store was down waits for it).
RETRY = re.compile(
    r"task store unavailable(?: at start)? \(.*?\); retrying in ([0-9.]+)s", re.DOTALL
)


class Scale:
    """Worker processes and store helpers for one store, sharing ``env`` and a ledger."""

    def __init__(self, children: Children, directory: Path, env: dict[str, str]) -> None:
        self.children = children
        self.directory = directory
        ledger = directory / "ledger"
        ledger.mkdir()
        self.ledger = Ledger(ledger)
        self.env = {"TANDEM_SCALE_LEDGER": str(ledger), **env}
        self._ops = 0

    def worker(self, *args: str, name: str, **env: str) -> Child:
        return self.children.worker(
            *args, name=name, settings_module=SETTINGS, **{**self.env, **env}
        )

    def ops(self, *args: str, timeout: float = 180.0) -> str:
        """Run ``python -m tests.support.scale_ops ARGS`` to the end; its stdout."""
        self._ops += 1
        child = self.children.python(
            "-m",
            "tests.support.scale_ops",
            *args,
            name=f"ops-{self._ops}-{args[0]}",
            settings_module=SETTINGS,
            **self.env,
        )
        assert child.wait(timeout) == 0, child.output()
        return child.stdout

    def migrate(self) -> None:
        """Create tandem's tables (a private server starts empty)."""
        self._ops += 1
        child = self.children.python(
            "-m",
            "django",
            "migrate",
            "tandem",
            "-v",
            "0",
            name=f"migrate-{self._ops}",
            settings_module=SETTINGS,
            **self.env,
        )
        assert child.wait(180) == 0, child.output()

    def enqueue(self, count: int, prefix: str, seconds: float = 0.0) -> list[str]:
        """``count`` ``mark`` tasks, stored with one ``tandem.enqueue_many()`` call; their ids."""
        out = self.directory / f"ids-{prefix}.json"
        self.ops("enqueue", str(count), prefix, repr(seconds), str(out))
        ids: list[str] = json.loads(out.read_text())
        assert len(ids) == len(set(ids)) == count
        return ids

    def wait_finished(self, count: int, timeout: float = 120.0) -> dict[str, int]:
        """Until ``count`` tasks have finished and none is READY or RUNNING (bounded)."""
        return dict(json.loads(self.ops("wait", str(count), repr(timeout), timeout=timeout + 60)))

    def registry_without(self, worker_id: str, timeout: float = 60.0) -> dict[str, str]:
        """Once ``worker_id`` has left the worker registry: worker id -> last heartbeat (iso)."""
        out = self.ops("forgotten", worker_id, repr(timeout), timeout=timeout + 60)
        return {worker["id"]: worker["last_heartbeat_at"] for worker in json.loads(out)}

    def snapshot(self, ids: list[str]) -> list[dict[str, Any] | None]:
        """What the store holds for each id, in order (None: the store has no such task)."""
        ids_file = self.directory / f"snapshot-ids-{self._ops}.json"
        ids_file.write_text(json.dumps(ids))
        out = self.directory / f"snapshot-{self._ops}.json"
        self.ops("snapshot", str(ids_file), str(out))
        rows: list[dict[str, Any] | None] = json.loads(out.read_text())
        return rows


def start_workers(scale: Scale, count: int, *args: str, **env: str) -> list[Child]:
    """``count`` ``tandem worker`` processes, returned once each has printed its banner."""
    workers = [scale.worker(*args, name=f"worker-{n}", **env) for n in range(count)]
    wait_until(
        lambda: all("  lease:" in w.stdout for w in workers),
        "the workers to start",
        timeout=60,
        alive=workers,
    )
    return workers


def worker_id(child: Child) -> str:
    """The worker id a ``tandem worker`` child printed in its banner."""
    found = BANNER.search(child.stdout)
    assert found, child.output()
    return found.group(1)


def stop_workers(workers: list[Child]) -> None:
    """SIGTERM (drain) to each worker; each must exit 0."""
    for worker in workers:
        if worker.running():
            worker.send(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(60) == 0, worker.output()
        assert "database is locked" not in worker.stderr, worker.output()


def store_retries(child: Child) -> list[float]:
    """The back-off delays a worker logged, in order ("task store unavailable …; retrying in X")."""
    return [float(delay) for delay in RETRY.findall(child.stderr)]


@dataclass
class Outcome:
    """What the checks found: tasks recovered from lost workers, attempts per worker id."""

    recovered: list[dict[str, Any]]
    per_worker: Counter[str]


def check_every_task_succeeded(
    ids: list[str], rows: list[dict[str, Any] | None], ledger: Ledger, prefix: str
) -> Outcome:
    """None lost, none left READY or RUNNING, all SUCCESSFUL; tasks without an error ran exactly
    once (one attempt, one ledger line); tasks with errors were recovered from a lost worker
    (only ``WorkerLost`` errors, one per extra attempt) and ran at most once per attempt."""
    lost = [task_id for task_id, row in zip(ids, rows, strict=True) if row is None]
    assert not lost, f"{len(lost)} task(s) missing from the store, e.g. {lost[:5]}"
    present = [row for row in rows if row is not None]
    statuses = Counter(row["status"] for row in present)
    assert statuses == {SUCCESSFUL: len(ids)}, statuses
    assert {row["worker_id"] for row in present} == {""}  # every lease released

    runs = ledger.runs()
    keys = {f"{prefix}-{n}" for n in range(len(ids))}
    assert {row["key"] for row in present} == keys
    unknown = set(runs) - keys
    assert not unknown, f"the ledger has runs of tasks never enqueued: {sorted(unknown)[:5]}"
    never = keys - set(runs)
    assert not never, f"{len(never)} SUCCESSFUL task(s) never ran, e.g. {sorted(never)[:5]}"

    recovered = []
    per_worker: Counter[str] = Counter()
    for row in present:
        per_worker.update(row["worker_ids"])
        attempts = len(row["worker_ids"])
        if not row["errors"]:
            assert attempts == 1, row
            assert runs[row["key"]] == 1, (runs[row["key"]], row)
            continue
        recovered.append(row)
        assert set(row["errors"]) == {WORKER_LOST}, row
        assert attempts == len(row["errors"]) + 1, row
        assert 1 <= runs[row["key"]] <= attempts, (runs[row["key"]], row)
    return Outcome(recovered=recovered, per_worker=per_worker)


def pid_of(worker: str) -> int:
    """The process id in a worker id (``host:pid:random``)."""
    return int(worker.rsplit(":", 2)[-2])

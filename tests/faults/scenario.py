"""One fault scenario: ``tandem worker`` processes on one store, ``hold`` tasks that keep a ledger
of their own life, and the checks every scenario ends with.

Every scenario ends the same way: every task SUCCESSFUL (none lost), nothing left READY or
RUNNING, each task ran to its end at least once, and no two runs of one task were alive at the
same time for longer than the scenario's bound (the ledger's ticks show when each run was alive).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections import Counter
from typing import Any

from django.conf import settings

from tests.faults import ledger
from tests.faults.tasks import TICK
from tests.support.processes import Child, wait_until
from tests.support.scale import Scale

SETTINGS = "tests.faults.settings"
#: The lease of every scenario, and the bound on the overlap of two live runs of one task after a
#: paused worker resumes: the lease guard's check (a twelfth of the lease), the time to stop the
#: run, and the ledger's resolution (two ticks).
LEASE = 3.0
PAUSE_BOUND = LEASE / 6 + 4 * TICK
#: How long a worker may take to drain and exit after one SIGTERM, its tasks all finished: a
#: store call blocked on a silent connection is cut after a lease, then the loop backs off and
#: reconnects. Generous for a loaded machine; without the cut, the worker never exits.
DRAIN_LIMIT = 45.0
#: The lines of the terminal summary (tests/faults/conftest.py).
REPORTS: list[str] = []


class Faults:
    """Workers of one scenario and what they share: store, ledger directory, executor."""

    def __init__(self, scale: Scale, executor: str) -> None:
        self.scale = scale
        self.executor = executor
        self.ledger = scale.directory / "runs"
        self.ledger.mkdir()
        self.env = {
            **scale.env,
            "TANDEM_FAULTS_LEDGER": str(self.ledger),
            "TANDEM_FAULTS_LEASE": repr(LEASE),
            "TANDEM_FAULTS_EXECUTOR": executor,
        }
        self.workers: list[Child] = []

    def worker(self, name: str, workers: int = 3, **env: str) -> Child:
        child = self.scale.children.python(
            "-m",
            "django",
            "tandem",
            "worker",
            "--workers",
            str(workers),
            "--no-schedule",
            name=name,
            settings_module=SETTINGS,
            **{**self.env, **env},
        )
        self.workers.append(child)
        wait_until(lambda: "  lease:" in child.stdout, f"{name} to start", 90, alive=[child])
        return child

    def enqueue(self, count: int, prefix: str, seconds: float, task: str = "hold") -> list[str]:
        out = self.scale.directory / f"ids-{prefix}.json"
        child = self.scale.children.python(
            "-m",
            "tests.faults.ops",
            "enqueue",
            str(count),
            prefix,
            repr(seconds),
            str(out),
            task,
            name=f"enqueue-{prefix}",
            settings_module=SETTINGS,
            **self.scale.env,
        )
        assert child.wait(120) == 0, child.output()
        ids: list[str] = json.loads(out.read_text())
        return ids

    def runs(self) -> dict[str, list[ledger.Run]]:
        return ledger.runs(self.ledger)

    def wait_started(self, count: int, alive: list[Child]) -> None:
        wait_until(
            lambda: sum(len(r) for r in self.runs().values()) >= count,
            f"{count} runs to start",
            timeout=90,
            alive=alive,
        )

    def stop(self) -> None:
        """One SIGTERM (drain) to every worker still running; each must drain and exit 0 on it
        — also a worker whose store connection went silent in an outage (its store watch cuts
        a call blocked for a lease). A worker still running after ``DRAIN_LIMIT`` fails the
        scenario (it is then killed)."""
        for child in self.workers:
            if child.running():
                child.send(signal.SIGTERM)
        deaf = []
        for child in self.workers:
            try:
                code = child.process.wait(DRAIN_LIMIT)
            except subprocess.TimeoutExpired:
                deaf.append(child)
                child.kill()
                continue
            assert code == 0, f"{child.name} exited with {code} on SIGTERM\n{child.output()}"
        assert not deaf, "did not exit on SIGTERM:\n" + "\n".join(c.output() for c in deaf)

    def finish(self, scenario: str, ids: list[str], bound: float, what: str) -> ledger.Overlaps:
        """Every task SUCCESSFUL and run to its end; no overlap of two live runs beyond
        ``bound`` seconds. Stops the workers; records and returns the numbers."""
        try:
            self.scale.wait_finished(len(ids), timeout=120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + "\n".join(c.output() for c in self.workers)) from None
        self.stop()
        rows = self.scale.snapshot(ids)
        lost = [task_id for task_id, row in zip(ids, rows, strict=True) if row is None]
        assert not lost, f"lost: {lost}"
        present: list[dict[str, Any]] = [row for row in rows if row is not None]
        assert Counter(row["status"] for row in present) == {"SUCCESSFUL": len(ids)}
        assert {row["worker_id"] for row in present} == {""}  # every lease released
        for row in present:  # a task that ran more than once lost its earlier attempts' leases
            assert set(row["errors"]) <= {"tandem.exceptions.WorkerLost"}, row

        found = self.runs()
        keys = {row["key"] for row in present}
        assert set(found) == keys, set(found) ^ keys
        for key, key_runs in found.items():
            assert any(run.ended is not None for run in key_runs), (key, key_runs)
        numbers = ledger.overlaps(found)
        store = "redis" if self.scale.env["TANDEM_SCALE_STORE"] == "redis" else settings.DB_KIND
        line = (
            f"faults {scenario} [{store}, {self.executor}] {what}: {numbers.line()}; "
            f"{sum(len(r['worker_ids']) for r in present)} attempts; 0 lost, bound {bound:.2f}s"
        )
        REPORTS.append(line)
        print(line)
        assert numbers.longest <= bound, line
        return numbers


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

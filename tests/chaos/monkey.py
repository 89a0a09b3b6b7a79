"""The chaos monkey: a deployment of ``tandem`` processes, one killed with SIGKILL every few
seconds and replaced at once, and the checks of what survived.

A ``Deployment`` is either ``tandem serve`` (one process: web and workers) or several ``tandem
worker`` processes, on one store. The kills come at random intervals from a seeded generator (the
seed is in the report), each picking a random live process. The ledger is a table in the run's
test database (``tests.chaos.tasks.append`` writes one row per run), read by this process.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection

from tests.models import Ledger
from tests.support import free_port
from tests.support.processes import Child, family, wait_until
from tests.support.scale import Scale, check_every_task_succeeded

SETTINGS = "tests.chaos.settings"
BANNER = re.compile(r"^tandem (?:worker|serve) (\S+)", re.MULTILINE)
#: Every chaos report of this test run, for the terminal summary (tests/chaos/conftest.py).
REPORTS: list[ChaosReport] = []


class TableLedger:
    """The ledger table, read like ``tests.support.scale_tasks.Ledger`` (key -> runs,
    pid -> runs)."""

    def rows(self) -> list[tuple[str, str]]:
        return list(Ledger.objects.values_list("key", "worker"))

    def total(self) -> int:
        return Ledger.objects.count()

    def ran(self) -> int:
        """How many tasks ran at least once (distinct keys)."""
        return Ledger.objects.values("key").distinct().count()

    def runs(self) -> Counter[str]:
        return Counter(key for key, _ in self.rows())

    def per_process(self) -> Counter[int]:
        return Counter(int(pid) for _, pid in self.rows())


@dataclass
class ChaosReport:
    """What one chaos run survived, as the closing numbers of the test."""

    scenario: str
    seed: int
    tasks: int
    kills: int
    restarts_of_store: int
    successful: int
    lost: int
    recovered: int  # tasks that needed more than one attempt
    duplicate_runs: int  # ledger rows beyond the first, all from attempts that were killed
    duplicated_tasks: int
    seconds: float
    killed: list[int] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"chaos {self.scenario}: {self.tasks} tasks, {self.kills} kill -9, "
            f"{self.restarts_of_store} store restart(s); {self.successful} SUCCESSFUL, "
            f"{self.lost} lost, {self.recovered} recovered, {self.duplicate_runs} duplicate run(s) "
            f"of {self.duplicated_tasks} task(s), all from killed attempts; seed {self.seed}, "
            f"{self.seconds:.0f}s"
        )


class Deployment:
    """``count`` processes of ``kind`` (``worker`` or ``serve``) on ``scale``'s store; a process
    that is killed is replaced by a new one at once."""

    def __init__(self, scale: Scale, kind: str, count: int, *args: str, **env: str) -> None:
        self.scale = scale
        self.kind = kind
        self.args = args
        self.env = {
            **scale.env,
            "TANDEM_LEDGER_DB_NAME": str(connection.settings_dict["NAME"]),
            **env,
        }
        self.started = 0
        self.live: list[Child] = []
        self.killed: list[Child] = []
        self.killed_family: set[int] = set()  # the killed processes and their descendants
        self.ports: dict[int, int] = {}
        for _ in range(count):
            self.live.append(self.start())
        self.wait_ready(self.live)

    def start(self) -> Child:
        self.started += 1
        name = f"{self.kind}-{self.started}"
        argv = ["-m", "django", "tandem", self.kind, *self.args]
        port = 0
        if self.kind == "serve":
            port = free_port()
            argv += ["--bind", f"127.0.0.1:{port}", "--grace", "5"]
        child = self.scale.children.python(*argv, name=name, settings_module=SETTINGS, **self.env)
        self.ports[child.pid] = port
        return child

    def wait_ready(self, children: list[Child]) -> None:
        wait_until(
            lambda: all("  lease:" in child.stdout for child in children),
            f"{self.kind} processes to start",
            timeout=90,
            alive=children,
        )
        if self.kind == "serve":
            from tests.support.serving import get

            for child in children:
                port = self.ports[child.pid]
                wait_until(
                    lambda port=port: _answers(get, port),
                    f"{child.name} to answer /-/health/live",
                    timeout=60,
                    alive=[child],
                )

    def kill_one(self, rng: random.Random) -> Child:
        """SIGKILL a random live process, start its replacement, wait until that one runs."""
        victim = rng.choice(self.live)
        # Its pool's children run its tasks (process executor): they die with it.
        self.killed_family.update(family(victim.pid))
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        self.live.remove(victim)
        self.killed.append(victim)
        replacement = self.start()
        self.live.append(replacement)
        self.wait_ready([replacement])
        return victim

    def stop(self) -> None:
        """SIGTERM (drain) to every live process; each must exit 0."""
        for child in self.live:
            child.send(signal.SIGTERM)
        for child in self.live:
            assert child.wait(90) == 0, child.output()

    def killed_worker_ids(self) -> set[str]:
        return {_worker_id(child) for child in self.killed}


def _answers(get: Any, port: int) -> bool:
    try:
        return bool(get(port, "/-/health/live", timeout=2)[0] == 200)
    except OSError:
        return False


def _worker_id(child: Child) -> str:
    """The worker id in a ``tandem worker`` or ``tandem serve`` banner."""
    found = BANNER.search(child.stdout)
    assert found, child.output()
    return found.group(1)


class Monkey:
    """Kills a random process of ``deployment`` every ``low``..``high`` seconds."""

    def __init__(self, deployment: Deployment, seed: int, low: float = 0.5, high: float = 1.5):
        self.deployment = deployment
        self.seed = seed
        self.rng = random.Random(seed)
        self.low, self.high = low, high

    def kill(
        self,
        times: int,
        ledger: TableLedger,
        tasks: int | Callable[[], int],
        *,
        at_least: int | None = None,
    ) -> int:
        """``times`` kills, each while tasks are still left to run (else the test proves
        nothing: it fails, asking for more work); how many were made. ``tasks``: how many there
        are, or a feeder, called before each kill's wait, that may enqueue more and returns how
        many there are by then. ``at_least``: for a fixed amount of work, the kills stop once it
        all ran, if that many were made by then (each kill waits for its replacement to start,
        which takes seconds on a loaded machine while the work goes on)."""
        for n in range(times):
            there = tasks() if callable(tasks) else tasks
            time.sleep(self.rng.uniform(self.low, self.high))
            if ledger.ran() >= there and at_least is not None and n >= at_least:
                return n
            assert ledger.ran() < there, (
                f"the {there} tasks all ran before kill {n + 1} of {times}: make them slower"
            )
            self.deployment.kill_one(self.rng)
        return times


def seed() -> int:
    """``TANDEM_CHAOS_SEED``, else a fixed one (a CI run is repeatable; the soak varies it)."""
    return int(os.environ.get("TANDEM_CHAOS_SEED", "20261202"))


def scaled(name: str, default: int) -> int:
    """A size the soak (bench/soak) raises: ``TANDEM_CHAOS_<NAME>``."""
    return int(os.environ.get(f"TANDEM_CHAOS_{name}", default))


def check_survived(
    scenario: str,
    deployment: Deployment,
    monkey: Monkey,
    ids: list[str],
    prefix: str,
    started: float,
    store_restarts: int = 0,
) -> ChaosReport:
    """Every task SUCCESSFUL and in the ledger; duplicates only from attempts that were killed:
    a process never killed ran each task at most once, and every lost attempt was a killed
    worker's. Records and returns the report."""
    scale = deployment.scale
    ledger = TableLedger()
    rows = scale.snapshot(ids)
    outcome = check_every_task_succeeded(ids, rows, ledger, prefix)  # type: ignore[arg-type]

    killed_ids = deployment.killed_worker_ids()
    killed_pids = {child.pid for child in deployment.killed} | deployment.killed_family
    for row in outcome.recovered:
        lost_attempts = row["worker_ids"][:-1]
        assert set(lost_attempts) <= killed_ids, (row, killed_ids)
    survivors_runs = Counter(key for key, pid in ledger.rows() if int(pid) not in killed_pids)
    twice = {key: n for key, n in survivors_runs.items() if n > 1}
    assert not twice, f"processes never killed ran tasks twice: {dict(list(twice.items())[:5])}"

    runs = ledger.runs()
    report = ChaosReport(
        scenario=scenario,
        seed=monkey.seed,
        tasks=len(ids),
        kills=len(deployment.killed),
        restarts_of_store=store_restarts,
        successful=sum(1 for row in rows if row and row["status"] == "SUCCESSFUL"),
        lost=sum(1 for row in rows if row is None),
        recovered=len(outcome.recovered),
        duplicate_runs=sum(n - 1 for n in runs.values() if n > 1),
        duplicated_tasks=sum(1 for n in runs.values() if n > 1),
        seconds=time.monotonic() - started,
        killed=sorted(killed_pids),
    )
    REPORTS.append(report)
    print(report.line())
    if directory := os.environ.get("TANDEM_CHAOS_REPORT"):
        path = Path(directory) / f"{scenario}-{os.getpid()}-{len(REPORTS)}.json"
        path.write_text(json.dumps(asdict(report), indent=2))
    return report

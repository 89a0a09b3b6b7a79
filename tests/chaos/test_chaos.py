"""Chaos: processes killed with SIGKILL every few seconds (and restarted), and the task store
restarted mid-run, while tasks each append a row to a ledger table. A feeder enqueues a batch
before a kill whenever few tasks are left unrun, so every kill lands amid work and little is left
to drain after the last one. At the end every task is SUCCESSFUL, every key is in the ledger,
duplicates come only from attempts that were killed, and nothing is left READY or RUNNING.
Bounded for CI; ``bench/soak`` runs the same tests longer (``TANDEM_CHAOS_TASKS``,
``TANDEM_CHAOS_KILLS``, ``TANDEM_CHAOS_SEED``; ``TANDEM_CHAOS_AHEAD`` sets the feeder's batch).

Scenarios: ``tandem serve`` alone (web and workers in one process, so a kill takes everything
down) on the run's database; three ``tandem worker`` processes on the run's database (PostgreSQL in
the PostgreSQL run) and on Redis; three workers on a private PostgreSQL or Redis server that is
also restarted halfway.
"""

from __future__ import annotations

import json
import math
import sys
import time

import pytest
from django.conf import settings

from tests.chaos.monkey import (
    SETTINGS,
    Deployment,
    Monkey,
    TableLedger,
    check_survived,
    scaled,
    seed,
)
from tests.support.processes import wait_until
from tests.support.scale import STORES, Scale, store_retries
from tests.support.servers import PrivateServer

#: A longer deadline than the suite's 180 s: on a loaded 2-core machine ``serve`` with
#: subinterpreters takes seconds to restart after each kill, and the scenario 60 to 140 s in all.
pytestmark = [
    pytest.mark.process,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

#: At most this many tasks per scenario (the feeder enqueues as many as the kills take; the soak
#: raises the bound with the kills).
TASKS = scaled("TASKS", 2000)
KILLS = scaled("KILLS", 10)
#: Recovery comes 2/3 to 4/3 of the lease after a kill; long enough that a busy machine does not
#: delay a live process's heartbeat past it (which would make a duplicate of a live attempt).
LEASE = "5"
#: The bounds of the waits grow with the work (the soak runs ten times more).
#: Below the tier's deadline (300 s), so a stuck run fails here, with every process's output.
WAIT = 240 * max(1.0, TASKS / 2000)
PARALLEL = (
    "subinterpreter" if sys.version_info >= (3, 14) and settings.DB_KIND != "mariadb" else "thread"
)
RESTARTED = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]


class Feeder:
    """The work of a scenario, enqueued as the monkey goes: called before each kill, it enqueues
    a batch whenever fewer than ``ahead`` tasks are left unrun (up to ``TASKS`` in all) and
    returns how many there are. ``ahead`` is twice what ``slots`` run in the monkey's longest
    wait (1.5 s), so the work outlasts the wait that follows; after a batch at least ``ahead``
    are left, since the batch is ``ahead`` too. After the last kill at most two batches are left
    to drain, whatever the machine's speed. One process enqueues every batch (``ops feed``): a
    batch costs an ``enqueue_many()``, not a Python start and a ``django.setup()``."""

    def __init__(self, scale: Scale, prefix: str, seconds: float, slots: int) -> None:
        self.ahead: int = scaled("AHEAD", math.ceil(2 * 1.5 * slots / seconds))
        self.ids: list[str] = []
        self.ledger = TableLedger()
        self.directory = scale.directory / f"feed-{prefix}"
        self.directory.mkdir()
        self.child = scale.children.python(
            "-m",
            "tests.chaos.ops",
            "feed",
            prefix,
            repr(seconds),
            str(self.directory),
            name=f"feeder-{prefix}",
            settings_module=SETTINGS,
            **scale.env,
        )

    def __call__(self) -> int:
        left = len(self.ids) - self.ledger.ran()
        count = min(self.ahead, TASKS - len(self.ids))
        if left < self.ahead and count > 0:
            self.add(count)
        return len(self.ids)

    def add(self, count: int) -> list[str]:
        """``count`` more tasks, keys from ``<prefix>-<len(ids)>``; their ids."""
        ids = self._request(count)
        assert len(ids) == len(set(ids)) == count
        self.ids += ids
        return ids

    def close(self) -> None:
        """Ends the feeder process (it must exit 0)."""
        self._request(0)

    def _request(self, count: int) -> list[str]:
        n = len(list(self.directory.glob("batch-*.json")))
        request = self.directory / f"batch-{n}.json"
        written = request.with_suffix(".tmp")
        written.write_text(json.dumps({"count": count, "first": len(self.ids)}))
        written.replace(request)
        if not count:
            assert self.child.wait(WAIT) == 0, self.child.output()
            return []
        out = self.directory / f"ids-{n}.json"
        wait_until(out.exists, f"the feeder's batch {n}", timeout=WAIT, alive=[self.child])
        ids: list[str] = json.loads(out.read_text())
        return ids


def finish(deployment: Deployment, ids: list[str]) -> None:
    """Until every task ran and none is READY or RUNNING; then drain and stop every process."""
    ledger = TableLedger()
    wait_until(
        lambda: len(ledger.runs()) >= len(ids),
        f"every one of {len(ids)} tasks to run",
        timeout=WAIT,
        alive=deployment.live,
    )
    assert deployment.scale.wait_finished(len(ids), timeout=WAIT) == {"SUCCESSFUL": len(ids)}
    deployment.stop()


@pytest.mark.parametrize("scale", ["database"], indirect=True)
def test_serve_killed_ten_times_loses_nothing(scale: Scale) -> None:
    started = time.monotonic()
    feeder = Feeder(scale, "serve", 0.04, slots=4)  # starts while the deployment does
    deployment = Deployment(
        scale, "serve", 1, "-w", "4", TANDEM_TEST_LEASE=LEASE, TANDEM_TEST_EXECUTOR=PARALLEL
    )
    monkey = Monkey(deployment, seed())
    monkey.kill(KILLS, TableLedger(), feeder)
    feeder.close()
    finish(deployment, feeder.ids)
    report = check_survived("serve", deployment, monkey, feeder.ids, "serve", started)
    assert report.kills >= KILLS and report.lost == 0


@pytest.mark.parametrize("scale", STORES, indirect=True)
def test_three_workers_killed_ten_times_lose_nothing(scale: Scale) -> None:
    started = time.monotonic()
    feeder = Feeder(scale, "workers", 0.2, slots=12)
    deployment = Deployment(scale, "worker", 3, "-w", "4", TANDEM_TEST_LEASE=LEASE)
    monkey = Monkey(deployment, seed())
    monkey.kill(KILLS, TableLedger(), feeder)
    feeder.close()
    finish(deployment, feeder.ids)
    store = scale.env["TANDEM_SCALE_STORE"]
    name = f"workers-{settings.DB_KIND if store == 'database' else store}"
    report = check_survived(name, deployment, monkey, feeder.ids, "workers", started)
    assert report.kills >= KILLS and report.lost == 0


@pytest.mark.parametrize("private_scale", RESTARTED, indirect=True)
def test_three_workers_survive_kills_and_a_store_restart(
    private_scale: tuple[Scale, PrivateServer],
) -> None:
    scale, server = private_scale
    started = time.monotonic()
    feeder = Feeder(scale, "restart", 0.2, slots=12)
    deployment = Deployment(scale, "worker", 3, "-w", "4", TANDEM_TEST_LEASE=LEASE)
    monkey = Monkey(deployment, seed())
    ledger = TableLedger()
    monkey.kill(KILLS // 2, ledger, feeder)

    feeder()  # the work must also outlast the store's restart
    server.stop()
    # Every live worker notices (a settle or claim fails) and backs off.
    wait_until(
        lambda: all(store_retries(w) for w in deployment.live),
        "every worker to retry the store",
        timeout=90,
        alive=deployment.live,
    )
    server.start()
    # Work was left throughout the outage (the feeder has enqueued nothing since).
    assert ledger.ran() < len(feeder.ids), "the tasks all ran before the store came back"
    monkey.kill(KILLS - KILLS // 2, ledger, feeder)
    feeder.close()
    finish(deployment, feeder.ids)
    report = check_survived(
        f"restart-{server.name}",
        deployment,
        monkey,
        feeder.ids,
        "restart",
        started,
        store_restarts=1,
    )
    assert report.kills >= KILLS and report.lost == 0

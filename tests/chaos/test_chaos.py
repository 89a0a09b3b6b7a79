"""Chaos: processes killed with SIGKILL every few seconds (and restarted), and the task store
restarted mid-run, while 2,000 tasks each append a row to a ledger table. At the end every task is
SUCCESSFUL, every key is in the ledger, duplicates come only from attempts that were killed, and
nothing is left READY or RUNNING. Bounded for CI; ``bench/soak`` runs the same tests longer
(``TANDEM_CHAOS_TASKS``, ``TANDEM_CHAOS_KILLS``, ``TANDEM_CHAOS_SEED``).

Scenarios: ``tandem serve`` alone (web and workers in one process, so a kill takes everything
down) on the run's database; three ``tandem worker`` processes on the run's database (PostgreSQL in
the PostgreSQL run) and on Redis; three workers on a private PostgreSQL or Redis server that is
also restarted halfway.
"""

from __future__ import annotations

import json
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

#: Enough work to outlast the kills (ten, 0.5 to 1.5 s apart, which a loaded machine stretches:
#: the workers' 12 slots run at most 60 tasks/s of 0.2 s; the monkey fails the test if the work
#: ran out first).
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


def enqueue(scale: Scale, count: int, prefix: str, seconds: float) -> list[str]:
    """``count`` ``append`` tasks (one ``enqueue_many()`` call); their ids, in order."""
    out = scale.directory / f"ids-{prefix}.json"
    child = scale.children.python(
        "-m",
        "tests.chaos.ops",
        "enqueue",
        str(count),
        prefix,
        repr(seconds),
        str(out),
        name=f"enqueue-{prefix}",
        settings_module=SETTINGS,
        **scale.env,
    )
    assert child.wait(WAIT) == 0, child.output()
    ids: list[str] = json.loads(out.read_text())
    assert len(ids) == len(set(ids)) == count
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
    deployment = Deployment(
        scale, "serve", 1, "-w", "4", TANDEM_TEST_LEASE=LEASE, TANDEM_TEST_EXECUTOR=PARALLEL
    )
    monkey = Monkey(deployment, seed())
    ids = enqueue(scale, TASKS, "serve", 0.04)
    monkey.kill(KILLS, TableLedger(), TASKS)
    finish(deployment, ids)
    report = check_survived("serve", deployment, monkey, ids, "serve", started)
    assert report.kills >= KILLS and report.lost == 0


@pytest.mark.parametrize("scale", STORES, indirect=True)
def test_three_workers_killed_ten_times_lose_nothing(scale: Scale) -> None:
    started = time.monotonic()
    deployment = Deployment(scale, "worker", 3, "-w", "4", TANDEM_TEST_LEASE=LEASE)
    monkey = Monkey(deployment, seed())
    ids = enqueue(scale, TASKS, "workers", 0.2)
    monkey.kill(KILLS, TableLedger(), TASKS)
    finish(deployment, ids)
    store = scale.env["TANDEM_SCALE_STORE"]
    name = f"workers-{settings.DB_KIND if store == 'database' else store}"
    report = check_survived(name, deployment, monkey, ids, "workers", started)
    assert report.kills >= KILLS and report.lost == 0


@pytest.mark.parametrize("private_scale", RESTARTED, indirect=True)
def test_three_workers_survive_kills_and_a_store_restart(
    private_scale: tuple[Scale, PrivateServer],
) -> None:
    scale, server = private_scale
    started = time.monotonic()
    deployment = Deployment(scale, "worker", 3, "-w", "4", TANDEM_TEST_LEASE=LEASE)
    monkey = Monkey(deployment, seed())
    # Slower tasks than the other scenarios: the work must also outlast the store's restart.
    ids = enqueue(scale, TASKS, "restart", 0.2)
    ledger = TableLedger()
    monkey.kill(KILLS // 2, ledger, TASKS)

    server.stop()
    # Every live worker notices (a settle or claim fails) and backs off.
    wait_until(
        lambda: all(store_retries(w) for w in deployment.live),
        "every worker to retry the store",
        timeout=90,
        alive=deployment.live,
    )
    server.start()
    monkey.kill(KILLS - KILLS // 2, ledger, TASKS)
    finish(deployment, ids)
    report = check_survived(
        f"restart-{server.name}", deployment, monkey, ids, "restart", started, store_restarts=1
    )
    assert report.kills >= KILLS and report.lost == 0

"""The store restarts mid-run: the workers back off while it is down, reconnect when it is back and
carry on; every task ends SUCCESSFUL, none is lost, none stays RUNNING.

Each variant starts a private server of its own (``tests/support/servers.py``) and restarts that
one, never the shared services other test runs use. PostgreSQL runs in the PostgreSQL run,
MariaDB in the MariaDB run, Redis (append-only file on, as a task store must be) in the SQLite run.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.processes import wait_until
from tests.support.scale import (
    PRIVATE,
    Scale,
    check_every_task_succeeded,
    start_workers,
    stop_workers,
    store_retries,
)
from tests.support.servers import PrivateServer

pytestmark = pytest.mark.process

WORKERS = 4
TASKS = 2500
SECONDS = 0.05  # per task: 4 workers x 4 threads run about 300 a second at most
#: Longer than the outage, so normally no lease expires; a task whose attempt was cut anyway is
#: recovered (WorkerLost) and run again, which the checks allow.
LEASE = "10"


@pytest.mark.parametrize("private_scale", PRIVATE, indirect=True)
def test_workers_reconnect_after_the_store_restarts_and_finish_every_task(
    private_scale: tuple[Scale, PrivateServer],
) -> None:
    scale, server = private_scale
    workers = start_workers(scale, WORKERS, TANDEM_TEST_LEASE=LEASE)
    ids = scale.enqueue(TASKS, "restart", SECONDS)
    wait_until(
        lambda: scale.ledger.total() >= TASKS // 10,
        "a tenth of the tasks to run",
        timeout=120,
        alive=workers,
    )

    server.stop()
    # Every worker notices (a settle or claim fails) and backs off, more than once.
    wait_until(
        lambda: all(len(store_retries(w)) >= 2 for w in workers),
        "every worker to retry the store twice",
        timeout=90,
        alive=workers,
    )
    assert scale.ledger.total() < TASKS * 0.9, "the tasks ran out before the outage; use more"
    server.start()
    before = scale.ledger.per_process()

    wait_until(
        lambda: len(scale.ledger.runs()) >= TASKS,
        f"every one of {TASKS} tasks to run",
        timeout=180,
        alive=workers,
    )
    assert scale.wait_finished(TASKS) == {"SUCCESSFUL": TASKS}
    after = scale.ledger.per_process()
    stop_workers(workers)

    # Each worker carried on: it ran tasks after the restart, and it backed off while the store
    # was down (the delays double, from 0.5 s).
    grew = Counter({pid: after[pid] - before[pid] for pid in after})
    assert all(grew[worker.pid] > 0 for worker in workers), (grew, before, after)
    for worker in workers:
        delays = store_retries(worker)
        assert delays[:2] == [0.5, 1.0], worker.output()
        assert "task store unavailable" in worker.stderr

    outcome = check_every_task_succeeded(ids, scale.snapshot(ids), scale.ledger, "restart")
    assert len(outcome.recovered) < TASKS // 10, len(outcome.recovered)

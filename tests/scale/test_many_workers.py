"""Four ``tandem worker`` processes share 10,000 tasks: each runs exactly once, none is claimed
twice, and every worker takes part.

The task is a no-op that appends its key to a per-process ledger file
(``tests/support/scale_tasks.py``), so how often each task really ran is counted outside the
store whose bookkeeping is under test.
"""

from __future__ import annotations

import pytest

from tests.support.processes import wait_until
from tests.support.scale import (
    STORES,
    Scale,
    check_every_task_succeeded,
    pid_of,
    start_workers,
    stop_workers,
    store_retries,
    worker_id,
)

# django_db: the database variant uses the test database (and the Redis one needs none).
pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

WORKERS = 4
TASKS = 10_000


@pytest.mark.parametrize("scale", STORES, indirect=True)
def test_four_workers_run_ten_thousand_tasks_exactly_once(scale: Scale) -> None:
    workers = start_workers(scale, WORKERS)
    ids = scale.enqueue(TASKS, "many")  # one enqueue_many() call

    wait_until(
        lambda: scale.ledger.total() >= TASKS,
        f"{TASKS} runs in the ledger",
        timeout=300,
        alive=workers,
    )
    assert scale.wait_finished(TASKS) == {"SUCCESSFUL": TASKS}
    stop_workers(workers)

    outcome = check_every_task_succeeded(ids, scale.snapshot(ids), scale.ledger, "many")
    assert outcome.recovered == []  # no task needed a second attempt
    assert scale.ledger.total() == TASKS  # exactly once: one ledger line per task
    for worker in workers:
        assert store_retries(worker) == [], worker.output()

    # Every worker took part, and the store's attempts agree with the ledger's processes.
    ids_by_pid = {worker.pid: worker_id(worker) for worker in workers}
    assert set(outcome.per_worker) == set(ids_by_pid.values()), outcome.per_worker
    assert {pid_of(w): n for w, n in outcome.per_worker.items()} == scale.ledger.per_process()
    assert sum(outcome.per_worker.values()) == TASKS

"""prune and count_finished: finished tasks of this backend, older than a moment, by status."""

from __future__ import annotations

import pytest

from tandem.brokers.base import FAILED, READY, RUNNING, SUCCESSFUL, Settlement
from tests.contract.conftest import T0, at, succeed, token

pytestmark = pytest.mark.django_db

BOTH = (SUCCESSFUL, FAILED)


@pytest.fixture
def finish(broker, push):
    """Push a task, claim it and settle it as ``status`` at ``at(seconds)``; return its id.

    ``via``: the broker of the task's backend (``broker`` by default).
    """

    def run(status: str, seconds: float, via=None, **fields) -> str:
        store = via or broker
        fields.setdefault("queue_name", "exports")
        task = push(enqueued_at=at(-3000), **fields)
        worker = f"w-{task.id[:8]}"
        [claimed] = store.claim([task.queue_name], 1, worker, at(3600), at(-2500))
        assert claimed.id == task.id
        when = at(seconds)
        if status == SUCCESSFUL:
            store.settle([succeed(task.id, worker, when)])
        else:
            store.settle(
                [
                    Settlement(
                        id=task.id,
                        attempt_token=token(task.id),
                        worker_id=worker,
                        status=FAILED,
                        finished_at=when,
                    )
                ]
            )
        return task.id

    return run


@pytest.fixture
def store(broker, push, finish):
    """Two successful and two failed tasks (one old, one recent each), one READY, one RUNNING."""
    ids = {
        "old_ok": finish(SUCCESSFUL, -500),
        "new_ok": finish(SUCCESSFUL, 100),
        "old_failed": finish(FAILED, -400),
        "new_failed": finish(FAILED, 200),
        "ready": push(enqueued_at=at(-3000)).id,
    }
    running = push(enqueued_at=at(-3000), queue_name="critical")
    broker.claim(["critical"], 1, "w-running", at(3600), at(-2000))
    ids["running"] = running.id
    return ids


def remaining(broker, ids):
    return {name for name, task_id in ids.items() if broker.get(task_id) is not None}


def test_prune_deletes_old_successful_tasks_only(broker, store):
    assert broker.prune(T0, [SUCCESSFUL]) == 1

    assert remaining(broker, store) == {"new_ok", "old_failed", "new_failed", "ready", "running"}


def test_prune_deletes_old_failed_tasks_only(broker, store):
    assert broker.prune(T0, [FAILED]) == 1

    assert remaining(broker, store) == {"old_ok", "new_ok", "new_failed", "ready", "running"}


def test_prune_both_statuses_up_to_a_later_moment(broker, store):
    assert broker.prune(at(150), BOTH) == 3

    assert remaining(broker, store) == {"new_failed", "ready", "running"}
    assert broker.get(store["running"]).status == RUNNING
    assert broker.get(store["ready"]).status == READY


def test_a_task_that_finished_at_the_cutoff_is_kept(broker, finish):
    task_id = finish(SUCCESSFUL, 0)

    assert broker.prune(T0, BOTH) == 0
    assert broker.prune(at(0.000001), BOTH) == 1
    assert broker.get(task_id) is None


def test_ready_and_running_are_never_pruned(broker, store):
    assert broker.prune(at(10_000), [READY, RUNNING]) == 0

    assert remaining(broker, store) == set(store)


def test_prune_leaves_other_backends_alone(broker, other_broker, finish):
    mine = finish(SUCCESSFUL, -100)
    theirs = finish(SUCCESSFUL, -100, via=other_broker, backend="other")

    assert broker.prune(T0, BOTH) == 1

    assert broker.get(mine) is None
    assert other_broker.get(theirs) is not None
    assert other_broker.prune(T0, BOTH) == 1
    assert other_broker.get(theirs) is None


def test_prune_counts_every_task_across_batches(broker, make_task):
    """More tasks than one database batch (1,000): all are deleted, and counted."""
    total = 2_345
    tasks = [make_task() for _ in range(total)]
    broker.push(tasks)
    claimed = broker.claim(["default"], total, "w1", at(9000), at(5000))
    assert len(claimed) == total
    broker.settle([succeed(t.id, "w1", at(-10)) for t in claimed])

    assert broker.prune(T0, [SUCCESSFUL]) == total

    assert broker.get(tasks[0].id) is None
    assert broker.get(tasks[-1].id) is None
    assert broker.prune(T0, BOTH) == 0


# -- count_finished: what prune would delete (tandem prune --dry-run and its progress) ----------


def test_count_finished_counts_what_prune_deletes(broker, store):
    assert broker.count_finished(T0, [SUCCESSFUL]) == 1
    assert broker.count_finished(T0, [FAILED]) == 1
    assert broker.count_finished(at(150), BOTH) == 3
    assert broker.count_finished(at(10_000), BOTH) == 4
    assert broker.count_finished(at(10_000), [READY, RUNNING]) == 0

    assert broker.prune(at(150), BOTH) == 3

    assert broker.count_finished(at(150), BOTH) == 0
    assert broker.count_finished(at(10_000), BOTH) == 1
    assert remaining(broker, store) == {"new_failed", "ready", "running"}  # counting deletes none


def test_count_finished_is_strictly_before_and_per_backend(broker, other_broker, finish):
    finish(SUCCESSFUL, 0)
    finish(FAILED, -100, via=other_broker, backend="other")

    assert broker.count_finished(T0, BOTH) == 0
    assert broker.count_finished(at(0.000001), BOTH) == 1
    assert other_broker.count_finished(T0, BOTH) == 1
    assert other_broker.count_finished(T0, [SUCCESSFUL]) == 0

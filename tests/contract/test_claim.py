"""claim: which tasks are claimable, in which order, and what a claim writes."""

from __future__ import annotations

import random

import pytest

from tandem.brokers.base import FAILED, READY, RUNNING, Settlement
from tests.contract.conftest import ALIAS, T0, at, succeed, token

pytestmark = pytest.mark.django_db

LEASE = at(60)


def ids(tasks):
    return [t.id for t in tasks]


def test_claim_takes_only_ready_tasks(broker, push):
    done = push(enqueued_at=at(-3))
    failed = push(enqueued_at=at(-2))
    running = push(enqueued_at=at(-1))
    broker.claim(["default"], 3, "w0", LEASE, T0)
    broker.settle(
        [
            succeed(done.id, "w0", T0),
            Settlement(
                id=failed.id,
                attempt_token=token(failed.id),
                worker_id="w0",
                status=FAILED,
                finished_at=T0,
            ),
        ]
    )
    assert broker.get(running.id).status == RUNNING
    ready = push(enqueued_at=T0)

    claimed = broker.claim(["default"], 10, "w1", LEASE, at(1))

    assert ids(claimed) == [ready.id]


def test_claim_takes_only_listed_queues(broker, push):
    default = push(queue_name="default")
    critical = push(queue_name="critical")
    push(queue_name="exports")

    claimed = broker.claim(["default", "critical"], 10, "w1", LEASE, T0)

    assert sorted(ids(claimed)) == sorted([default.id, critical.id])
    assert broker.claim(["nothing-here"], 10, "w1", LEASE, T0) == []


def test_claim_takes_only_this_backend(broker, push):
    mine = push(backend=ALIAS)
    other = push(backend="other")

    claimed = broker.claim(["default"], 10, "w1", LEASE, T0)

    assert ids(claimed) == [mine.id]
    assert broker.get(other.id).status == READY


def test_claim_takes_only_tasks_available_by_now(broker, push):
    due = push(run_after=T0)
    later = push(run_after=at(0.000001))

    assert ids(broker.claim(["default"], 10, "w1", LEASE, T0)) == [due.id]
    assert broker.claim(["default"], 10, "w1", LEASE, T0) == []
    assert ids(broker.claim(["default"], 10, "w1", LEASE, at(0.000001))) == [later.id]


def test_claim_order_is_priority_then_available_at_then_enqueued_at(broker, make_task):
    # Named by expected rank; pushed shuffled so insertion order cannot explain the result.
    expected = [
        make_task(priority=10, run_after=at(-60), enqueued_at=at(-70)),
        make_task(priority=10, run_after=None, enqueued_at=at(-40)),  # available at -40
        make_task(priority=0, run_after=None, enqueued_at=at(-30)),
        make_task(priority=0, run_after=at(-20), enqueued_at=at(-100)),  # ties on available_at…
        make_task(priority=0, run_after=at(-20), enqueued_at=at(-90)),  # …then enqueued_at
        make_task(priority=0, run_after=None, enqueued_at=at(-10)),
        make_task(priority=-5, run_after=None, enqueued_at=at(-200)),
        make_task(priority=-100, run_after=None, enqueued_at=at(-300)),
    ]
    shuffled = expected[:]
    random.Random(7).shuffle(shuffled)
    broker.push(shuffled)

    claimed = broker.claim(["default"], 100, "w1", LEASE, T0)

    assert ids(claimed) == ids(expected)


def test_claim_picks_by_order_when_limited(broker, make_task):
    tasks = [make_task(priority=p, enqueued_at=at(p - 10)) for p in (3, -1, 7, 0, 5)]
    broker.push(tasks)
    by_rank = sorted(tasks, key=lambda t: -t.priority)

    picked = [broker.claim(["default"], 1, f"w{i}", LEASE, T0) for i in range(6)]

    assert [ids(batch) for batch in picked] == [[t.id] for t in by_rank] + [[]]


def test_claim_respects_limit(broker, make_task):
    tasks = [make_task(priority=p) for p in range(5)]
    broker.push(tasks)

    claimed = broker.claim(["default"], 2, "w1", LEASE, T0)

    assert ids(claimed) == [tasks[4].id, tasks[3].id]
    assert sum(broker.get(t.id).status == READY for t in tasks) == 3


@pytest.mark.parametrize(("queues", "limit"), [([], 5), (["default"], 0)])
def test_claim_nothing_asked_claims_nothing(broker, push, queues, limit):
    new = push()

    assert broker.claim(queues, limit, "w1", LEASE, T0) == []
    assert broker.get(new.id).status == READY


def test_claim_writes_the_lease_and_the_attempt(broker, push):
    new = push(enqueued_at=at(-5))

    [claimed] = broker.claim(["default"], 1, "worker-1", LEASE, T0)

    assert claimed.id == new.id
    assert claimed.status == RUNNING
    assert claimed.worker_id == "worker-1"
    assert claimed.lease_expires_at == LEASE
    assert claimed.started_at == T0
    assert claimed.last_attempted_at == T0
    assert claimed.worker_ids == ("worker-1",)
    assert claimed.attempts == 1
    assert claimed.finished_at is None
    assert claimed.args == new.args
    assert broker.get(new.id) == claimed


def test_started_at_is_set_only_on_the_first_attempt(broker, push):
    new = push(enqueued_at=at(-5), max_attempts=3)
    broker.claim(["default"], 1, "w1", LEASE, T0)
    error_settlement = Settlement(
        id=new.id,
        attempt_token=token(new.id),
        worker_id="w1",
        status=READY,
        finished_at=at(1),
        error=_error(),
        retry_at=at(10),
    )
    assert broker.settle([error_settlement]) == 1

    [second] = broker.claim(["default"], 1, "w2", at(100), at(10))

    assert second.started_at == T0
    assert second.last_attempted_at == at(10)
    assert second.worker_ids == ("w1", "w2")
    assert second.attempts == 2
    assert second.worker_id == "w2"
    assert second.lease_expires_at == at(100)


def test_claims_never_return_the_same_task(broker, make_task):
    tasks = [make_task() for _ in range(10)]
    broker.push(tasks)

    batches = [broker.claim(["default"], n, f"w{n}", LEASE, T0) for n in (3, 3, 10, 10)]

    claimed = [task_id for batch in batches for task_id in ids(batch)]
    assert [len(b) for b in batches] == [3, 3, 4, 0]
    assert len(set(claimed)) == len(claimed)
    assert set(claimed) == {t.id for t in tasks}
    for batch in batches:
        for task in batch:
            assert broker.get(task.id).worker_ids == (task.worker_id,)


def _error():
    from tandem.brokers.base import ErrorRecord

    return ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError: x\n")

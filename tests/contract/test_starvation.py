"""``claim_starved``: READY tasks due before a bound, oldest first whatever their priority."""

from __future__ import annotations

import pytest

from tandem.brokers.base import READY, RUNNING
from tests.contract.conftest import T0, at

pytestmark = pytest.mark.django_db

LEASE = at(60)


def ids(tasks):
    return [t.id for t in tasks]


def test_only_tasks_due_before_the_bound_oldest_first_whatever_their_priority(broker, push):
    old_low = push(priority=-5, enqueued_at=at(-600))
    older_low = push(priority=-9, enqueued_at=at(-900))
    old_high = push(priority=5, enqueued_at=at(-400))
    young_high = push(priority=9, enqueued_at=at(-10))

    claimed = broker.claim_starved(["default"], 10, "w1", LEASE, T0, at(-300))

    assert ids(claimed) == [older_low.id, old_low.id, old_high.id]
    assert {t.status for t in claimed} == {RUNNING}
    assert claimed[0].worker_ids == ("w1",) and claimed[0].attempt_token
    assert broker.get(young_high.id).status == READY
    assert ids(broker.claim(["default"], 10, "w1", LEASE, T0)) == [young_high.id]


def test_the_limit_takes_the_oldest(broker, push):
    tasks = [push(priority=p, enqueued_at=at(-1000 + n)) for n, p in enumerate([3, -3, 0, 7])]

    claimed = broker.claim_starved(["default"], 2, "w1", LEASE, T0, at(-300))

    assert ids(claimed) == [tasks[0].id, tasks[1].id]


def test_nothing_starves_nothing_is_claimed(broker, push):
    push(enqueued_at=at(-100))

    assert broker.claim_starved(["default"], 10, "w1", LEASE, T0, at(-300)) == []
    assert broker.claim_starved(["default"], 0, "w1", LEASE, T0, at(10)) == []
    assert broker.claim_starved([], 10, "w1", LEASE, T0, at(10)) == []


def test_a_run_after_counts_from_when_the_task_became_due(broker, push):
    deferred = push(enqueued_at=at(-1000), run_after=at(-100))  # due 100 s ago only
    waiting = push(enqueued_at=at(-500))

    claimed = broker.claim_starved(["default"], 10, "w1", LEASE, T0, at(-300))

    assert ids(claimed) == [waiting.id]
    assert broker.get(deferred.id).status == READY


def test_queues_other_backends_and_paused_queues_are_left_alone(broker, other_broker, push):
    push(queue_name="exports", enqueued_at=at(-900))
    push(backend="other", enqueued_at=at(-900))
    paused = push(queue_name="critical", enqueued_at=at(-900))
    broker.pause_queues(["critical"], T0)

    assert broker.claim_starved(["default", "critical"], 10, "w1", LEASE, T0, at(-300)) == []
    broker.resume_queues(["critical"])
    assert ids(broker.claim_starved(["critical"], 10, "w1", LEASE, T0, at(-300))) == [paused.id]


def test_a_bound_after_now_is_now(broker, push):
    future = push(enqueued_at=at(-10), run_after=at(30))

    assert broker.claim_starved(["default"], 10, "w1", LEASE, T0, at(100)) == []
    assert broker.get(future.id).status == READY

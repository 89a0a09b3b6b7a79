"""Paused queues: stored per backend, skipped by claims and ``has_ready``, resumed on demand."""

from __future__ import annotations

import pytest

from tandem.brokers.base import READY, RUNNING
from tests.contract.conftest import T0, at, succeed

pytestmark = pytest.mark.django_db

LEASE = at(60)


def test_nothing_is_paused_at_first(broker):
    assert broker.paused_queues() == {}


def test_pause_answers_the_queues_it_paused_and_records_when(broker):
    assert broker.pause_queues(["exports", "default", "exports"], T0) == ["exports", "default"]
    assert broker.pause_queues(["default", "critical"], at(5)) == ["critical"]

    assert broker.paused_queues() == {"critical": at(5), "default": T0, "exports": T0}


def test_a_paused_queue_starts_nothing_and_keeps_its_tasks_ready(broker, push):
    paused = push(queue_name="exports")
    other = push(queue_name="default")
    broker.pause_queues(["exports"], T0)

    assert not broker.has_ready(["exports"], T0)
    claimed = broker.claim(["exports", "default"], 10, "w1", LEASE, T0)

    assert [t.id for t in claimed] == [other.id]
    assert broker.get(paused.id).status == READY
    assert broker.claim(["exports"], 10, "w1", LEASE, T0) == []


def test_a_paused_queue_still_accepts_tasks(broker, push):
    broker.pause_queues(["exports"], T0)
    task = push(queue_name="exports")

    assert broker.get(task.id).status == READY
    assert [s.ready for s in broker.stats() if s.queue_name == "exports"] == [1]


def test_a_running_task_of_a_paused_queue_finishes(broker, push):
    task = push(queue_name="exports")
    [claimed] = broker.claim(["exports"], 1, "w1", LEASE, T0)
    broker.pause_queues(["exports"], at(1))

    assert broker.get(task.id).status == RUNNING
    assert broker.settle([succeed(claimed.id, "w1", at(2))]) == 1
    assert broker.get(task.id).status == "SUCCESSFUL"


def test_resume_makes_the_queue_claimable_again(broker, push):
    task = push(queue_name="exports")
    broker.pause_queues(["exports", "default"], T0)

    assert broker.resume_queues(["exports", "nightly"]) == ["exports"]
    assert broker.resume_queues(["exports"]) == []

    assert broker.paused_queues() == {"default": T0}
    assert broker.has_ready(["exports"], at(1))
    assert [t.id for t in broker.claim(["exports"], 10, "w1", LEASE, at(1))] == [task.id]


def test_a_pause_belongs_to_one_backend(broker, other_broker, push):
    mine = push(queue_name="exports")
    theirs = push(queue_name="exports", backend="other")
    other_broker.pause_queues(["exports"], T0)

    assert broker.paused_queues() == {}
    assert [t.id for t in broker.claim(["exports"], 10, "w1", LEASE, T0)] == [mine.id]
    assert other_broker.claim(["exports"], 10, "w2", LEASE, T0) == []
    assert other_broker.get(theirs.id).status == READY


def test_pausing_nothing_changes_nothing(broker):
    assert broker.pause_queues([], T0) == []
    assert broker.resume_queues([]) == []
    assert broker.paused_queues() == {}

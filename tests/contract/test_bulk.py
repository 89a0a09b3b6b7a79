"""``find`` and ``retry_failed``: the selections and bulk retry behind ``tandem retry|cancel``."""

from __future__ import annotations

import pytest

from tandem.brokers.base import FAILED, READY, RUNNING, SUCCESSFUL, ErrorRecord, Settlement
from tests.contract.conftest import T0, at, succeed, token

pytestmark = pytest.mark.django_db

LEASE = at(60)


def fail_it(broker, task_id: str, worker: str, when) -> None:
    assert broker.settle(
        [
            Settlement(
                id=task_id,
                attempt_token=token(task_id),
                worker_id=worker,
                status=FAILED,
                finished_at=when,
                error=ErrorRecord(exception_class_path="builtins.ValueError", traceback="boom"),
            )
        ]
    )


@pytest.fixture
def mix(broker, push):
    """Two FAILED (at 10 s and 20 s), one SUCCESSFUL, one RUNNING and two READY tasks."""
    tasks = {
        "old_failure": push(queue_name="default", task_path="tests.tasks.fail"),
        "new_failure": push(queue_name="exports", task_path="tests.tasks.fail"),
        "done": push(queue_name="default"),
        "running": push(queue_name="default"),
        "waiting": push(queue_name="exports"),
        "later": push(queue_name="default", run_after=at(3600)),
    }
    order = ["old_failure", "new_failure", "done", "running"]
    claimed = broker.claim(["default", "exports"], 4, "w1", LEASE, T0)
    assert [t.id for t in claimed] == [tasks[name].id for name in order]
    fail_it(broker, tasks["old_failure"].id, "w1", at(10))
    fail_it(broker, tasks["new_failure"].id, "w1", at(20))
    assert broker.settle([succeed(tasks["done"].id, "w1", at(5))]) == 1
    return {name: t.id for name, t in tasks.items()}


def test_find_selects_by_status_in_enqueue_order(broker, mix):
    assert broker.find([FAILED]) == [mix["old_failure"], mix["new_failure"]]
    assert broker.find([READY]) == [mix["waiting"], mix["later"]]
    assert broker.find([READY, RUNNING]) == [mix["running"], mix["waiting"], mix["later"]]
    assert broker.find([SUCCESSFUL]) == [mix["done"]]


def test_find_narrows_by_queue_path_time_and_ids(broker, mix, make_task):
    assert broker.find([FAILED], queue="exports") == [mix["new_failure"]]
    assert broker.find([FAILED], task_path="tests.tasks.fail") == [
        mix["old_failure"],
        mix["new_failure"],
    ]
    assert broker.find([FAILED], task_path="tests.tasks.add") == []
    assert broker.find([FAILED], finished_since=at(15)) == [mix["new_failure"]]
    assert broker.find([READY], enqueued_since=broker.get(mix["later"]).enqueued_at) == [
        mix["later"]
    ]
    assert broker.find([FAILED], ids=[mix["new_failure"], mix["waiting"], "not-a-uuid"]) == [
        mix["new_failure"]
    ]
    assert broker.find([FAILED], ids=[make_task().id]) == []  # unknown


def test_find_sees_only_its_own_backend(broker, other_broker, mix):
    assert other_broker.find([FAILED, READY, RUNNING, SUCCESSFUL]) == []
    assert other_broker.find([FAILED], ids=[mix["old_failure"]]) == []


def test_retry_failed_gives_a_fresh_budget_and_keeps_the_history(broker, mix):
    task_id = mix["old_failure"]
    before = broker.get(task_id)

    moved = broker.retry_failed({task_id: before.attempts + 3, mix["waiting"]: 9}, at(30))

    assert moved == [task_id]  # the READY task was left alone
    after = broker.get(task_id)
    assert (after.status, after.max_attempts, after.available_at) == (READY, 4, at(30))
    assert after.finished_at is None and after.lease_expires_at is None
    assert after.errors == before.errors and len(after.errors) == 1
    assert after.worker_ids == before.worker_ids == ("w1",)
    assert broker.get(mix["waiting"]).max_attempts == 1
    assert broker.find([FAILED]) == [mix["new_failure"]]


def test_a_retried_task_is_claimed_again_as_its_next_attempt(broker, mix):
    task_id = mix["new_failure"]
    broker.retry_failed({task_id: 2}, at(30))

    claimed = broker.claim(["exports"], 10, "w2", at(90), at(30))

    assert task_id in [t.id for t in claimed]
    again = broker.get(task_id)
    assert (again.status, again.attempts, again.worker_ids) == (RUNNING, 2, ("w1", "w2"))


def test_retry_failed_ignores_other_backends_and_bad_ids(broker, other_broker, mix):
    assert other_broker.retry_failed({mix["old_failure"]: 5}, at(30)) == []
    assert broker.retry_failed({"not-a-uuid": 5}, at(30)) == []
    assert broker.retry_failed({}, at(30)) == []
    assert broker.get(mix["old_failure"]).status == FAILED

"""renew, settle, release and recover_expired: every way out of RUNNING is guarded by the lease."""

from __future__ import annotations

import pytest

from tandem.brokers.base import (
    FAILED,
    READY,
    RUNNING,
    SUCCESSFUL,
    ErrorRecord,
    Recovered,
    Settlement,
)
from tests.contract.conftest import T0, at, succeed, token

pytestmark = pytest.mark.django_db

LEASE = at(60)
BOOM = ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError: boom\n")


@pytest.fixture
def claimed(broker, push):
    """Push and claim one task as ``w1`` at T0 (lease until T0+60s); return its id."""

    def claim_one(worker_id="w1", **fields):
        new = push(enqueued_at=at(-10), **fields)
        [task] = broker.claim(["default"], 1, worker_id, LEASE, T0)
        assert task.id == new.id
        return new.id

    return claim_one


# -- renew -------------------------------------------------------------------------------------


def test_renew_extends_only_leases_the_worker_holds(broker, claimed):
    mine = claimed("w1")
    also_mine = claimed("w1")
    theirs = claimed("w2")
    finished = claimed("w1")
    broker.settle([succeed(finished, "w1", at(1))])

    asked = {i: token(i) for i in (mine, also_mine, theirs, finished)}
    held = broker.renew("w1", asked, at(120), T0)

    assert held == {mine, also_mine}
    assert broker.get(mine).lease_expires_at == at(120)
    assert broker.get(also_mine).lease_expires_at == at(120)
    assert broker.get(theirs).lease_expires_at == LEASE
    assert broker.get(theirs).worker_id == "w2"
    assert broker.get(finished).lease_expires_at is None
    assert broker.get(finished).status == SUCCESSFUL


def test_renew_nothing_held(broker, claimed):
    task_id = claimed("w1")

    assert broker.renew("w1", {}, at(120), T0) == set()
    assert broker.renew("nobody", {task_id: token(task_id)}, at(120), T0) == set()
    assert broker.get(task_id).lease_expires_at == LEASE


# -- settle ------------------------------------------------------------------------------------


def test_settle_successful(broker, claimed):
    task_id = claimed()
    value = {"total": 3, "items": [1, "two", None], "ok": True}

    written = broker.settle([succeed(task_id, "w1", at(5), value)])

    task = broker.get(task_id)
    assert written == 1
    assert task.status == SUCCESSFUL
    assert task.return_value == value
    assert task.finished_at == at(5)
    assert task.errors == ()
    assert task.worker_id == ""
    assert task.lease_expires_at is None
    assert task.worker_ids == ("w1",)
    assert task.started_at == T0


@pytest.mark.parametrize("value", [None, 0, "", [], "text", 1.25])
def test_settle_successful_scalar_return_values(broker, claimed, value):
    task_id = claimed()

    broker.settle([succeed(task_id, "w1", at(5), value)])

    assert broker.get(task_id).return_value == value


def test_settle_failed_appends_the_error(broker, claimed):
    task_id = claimed()

    written = broker.settle(
        [
            Settlement(
                id=task_id,
                attempt_token=token(task_id),
                worker_id="w1",
                status=FAILED,
                finished_at=at(5),
                error=BOOM,
            )
        ]
    )

    task = broker.get(task_id)
    assert written == 1
    assert task.status == FAILED
    assert task.errors == (BOOM,)
    assert task.finished_at == at(5)
    assert task.worker_id == ""
    assert task.lease_expires_at is None


def test_settle_retry_is_ready_again_at_retry_at(broker, claimed):
    task_id = claimed(max_attempts=3)
    retry = Settlement(
        id=task_id,
        attempt_token=token(task_id),
        worker_id="w1",
        status=READY,
        finished_at=at(5),
        error=BOOM,
        retry_at=at(30),
    )

    written = broker.settle([retry])

    task = broker.get(task_id)
    assert written == 1
    assert task.status == READY
    assert task.available_at == at(30)
    assert task.errors == (BOOM,)
    assert task.finished_at is None
    assert task.worker_id == ""
    assert task.lease_expires_at is None
    assert broker.has_ready(["default"], at(29.999999)) is False
    assert broker.claim(["default"], 10, "w2", at(100), at(29.999999)) == []
    [again] = broker.claim(["default"], 10, "w2", at(100), at(30))
    assert again.id == task_id
    assert again.worker_ids == ("w1", "w2")


def test_settle_batch_counts_each_written_row(broker, claimed):
    ok_1, ok_2, failed, retried, lost = (claimed() for _ in range(5))
    broker.renew("w1", {lost: token(lost)}, LEASE, T0)

    written = broker.settle(
        [
            succeed(ok_1, "w1", at(5), 1),
            succeed(ok_2, "w1", at(5), 2),
            Settlement(
                id=failed,
                attempt_token=token(failed),
                worker_id="w1",
                status=FAILED,
                finished_at=at(5),
                error=BOOM,
            ),
            Settlement(
                id=retried,
                attempt_token=token(retried),
                worker_id="w1",
                status=READY,
                finished_at=at(5),
                error=BOOM,
                retry_at=at(9),
            ),
            succeed(lost, "someone-else", at(5), 3),
        ]
    )

    assert written == 4
    assert [broker.get(i).status for i in (ok_1, ok_2, failed, retried, lost)] == [
        SUCCESSFUL,
        SUCCESSFUL,
        FAILED,
        READY,
        RUNNING,
    ]
    assert broker.settle([]) == 0


def test_settle_by_the_wrong_worker_is_ignored(broker, claimed):
    task_id = claimed("w1")
    before = broker.get(task_id)

    written = broker.settle([succeed(task_id, "w2", at(5), "stolen")])

    assert written == 0
    assert broker.get(task_id) == before


def test_settle_after_the_lease_was_lost_is_ignored(broker, claimed):
    task_id = claimed("w1")
    broker.recover_expired(at(61), recovery_max_attempts=3)
    recovered = broker.get(task_id)
    assert recovered.status == READY

    written = broker.settle(
        [
            Settlement(
                id=task_id,
                attempt_token=token(task_id),
                worker_id="w1",
                status=FAILED,
                finished_at=at(62),
                error=BOOM,
            )
        ]
    )

    assert written == 0
    assert broker.get(task_id) == recovered


def test_a_stale_worker_cannot_overwrite_the_newer_attempt(broker, claimed):
    task_id = claimed("w1")
    old = token(task_id)
    broker.recover_expired(at(61), recovery_max_attempts=3)
    [again] = broker.claim(["default"], 1, "w2", at(200), at(70))
    assert again.id == task_id

    assert broker.settle([succeed(task_id, "w1", at(71), "old", attempt=old)]) == 0
    assert broker.renew("w1", {task_id: old}, at(500), at(70)) == set()
    assert broker.release("w1", [task_id], at(72)) == 0
    assert broker.get(task_id).status == RUNNING
    assert broker.get(task_id).lease_expires_at == at(200)

    assert broker.settle([succeed(task_id, "w2", at(80), "new")]) == 1
    task = broker.get(task_id)
    assert (task.status, task.return_value, task.worker_ids) == (SUCCESSFUL, "new", ("w1", "w2"))


# -- release -----------------------------------------------------------------------------------


def test_release_puts_held_tasks_back_with_a_released_error(broker, claimed):
    mine = claimed("w1")
    theirs = claimed("w2")

    released = broker.release("w1", [mine, theirs], at(5))

    assert released == 1
    task = broker.get(mine)
    assert task.status == READY
    assert task.available_at == at(5)
    assert task.worker_id == ""
    assert task.lease_expires_at is None
    assert task.finished_at is None
    assert [e.exception_class_path for e in task.errors] == ["tandem.exceptions.Released"]
    assert "'w1'" in task.errors[0].traceback
    assert broker.get(theirs).status == RUNNING
    assert broker.get(theirs).errors == ()
    assert [t.id for t in broker.claim(["default"], 5, "w3", at(100), at(5))] == [mine]
    assert broker.release("w1", [], at(5)) == 0


# -- recover_expired ---------------------------------------------------------------------------


def test_recover_expired_puts_the_task_back_while_attempts_remain(broker, claimed):
    task_id = claimed("w1", max_attempts=1)

    recovered = broker.recover_expired(at(61), recovery_max_attempts=3)

    assert recovered == [Recovered(id=task_id, status=READY, worker_id="w1")]
    task = broker.get(task_id)
    assert task.status == READY
    assert task.available_at == at(61)
    assert task.finished_at is None
    assert task.worker_id == ""
    assert task.lease_expires_at is None
    assert [e.exception_class_path for e in task.errors] == ["tandem.exceptions.WorkerLost"]
    assert "'w1'" in task.errors[0].traceback
    assert [t.id for t in broker.claim(["default"], 1, "w2", at(200), at(61))] == [task_id]


def test_recover_expired_fails_the_task_when_attempts_are_spent(broker, claimed):
    task_id = claimed("w1", max_attempts=1)

    recovered = broker.recover_expired(at(61), recovery_max_attempts=1)

    assert recovered == [Recovered(id=task_id, status=FAILED, worker_id="w1")]
    task = broker.get(task_id)
    assert task.status == FAILED
    assert task.finished_at == at(61)
    assert task.worker_id == ""
    assert task.lease_expires_at is None
    assert [e.exception_class_path for e in task.errors] == ["tandem.exceptions.WorkerLost"]
    assert broker.has_ready(["default"], at(1000)) is False


@pytest.mark.parametrize(
    ("max_attempts", "recovery_max_attempts", "losses_until_failed"),
    [(1, 1, 1), (1, 3, 3), (3, 1, 3), (2, 4, 4), (4, 2, 4)],
)
def test_recovery_allows_the_larger_of_max_attempts_and_recovery_max_attempts(
    broker, push, max_attempts, recovery_max_attempts, losses_until_failed
):
    new = push(enqueued_at=at(-10), max_attempts=max_attempts)
    statuses = []
    for attempt in range(losses_until_failed):
        now = at(attempt * 100)
        [task] = broker.claim(["default"], 1, f"w{attempt}", now + (LEASE - T0), now)
        assert task.id == new.id
        [rec] = broker.recover_expired(at(attempt * 100 + 61), recovery_max_attempts)
        statuses.append(rec.status)

    assert statuses == [READY] * (losses_until_failed - 1) + [FAILED]
    task = broker.get(new.id)
    assert task.attempts == losses_until_failed
    assert len(task.errors) == losses_until_failed


def test_recover_expired_leaves_live_leases_alone(broker, claimed):
    live = claimed("w1")
    broker.renew("w1", {live: token(live)}, at(120), T0)
    expired = claimed("w2")

    recovered = broker.recover_expired(at(61), recovery_max_attempts=3)

    assert [r.id for r in recovered] == [expired]
    assert broker.get(live).status == RUNNING
    assert broker.get(live).lease_expires_at == at(120)
    assert broker.get(live).errors == ()


def test_a_lease_that_expires_exactly_now_is_not_recovered(broker, claimed):
    task_id = claimed("w1")

    assert broker.recover_expired(LEASE, recovery_max_attempts=3) == []
    assert broker.get(task_id).status == RUNNING


def test_recover_expired_ignores_finished_tasks(broker, claimed):
    finished = claimed("w1")
    broker.settle([succeed(finished, "w1", at(1))])

    assert broker.recover_expired(at(10_000), recovery_max_attempts=3) == []
    assert broker.get(finished).status == SUCCESSFUL
    assert broker.get(finished).errors == ()


def test_recover_expired_ignores_other_backends(broker, other_broker, push):
    other = push(backend="other", enqueued_at=at(-10))
    [task] = other_broker.claim(["default"], 1, "w-other", LEASE, T0)
    assert task.id == other.id

    assert broker.recover_expired(at(10_000), recovery_max_attempts=3) == []
    assert broker.get(other.id).status == RUNNING
    assert [r.id for r in other_broker.recover_expired(at(10_000), 3)] == [other.id]


# -- attempt tokens ----------------------------------------------------------------------------


def test_each_claim_gets_a_fresh_attempt_token(broker, claimed):
    task_id = claimed("w1", max_attempts=3)
    first = token(task_id)
    broker.recover_expired(at(61), recovery_max_attempts=3)
    [again] = broker.claim(["default"], 1, "w1", at(200), at(70))

    assert first and again.attempt_token and again.attempt_token != first
    assert again.attempt_token == token(task_id)


def test_a_stale_attempt_of_the_same_worker_is_fenced_off(broker, claimed):
    """The same worker lost the task and claimed it again: only the new attempt may write."""
    task_id = claimed("w1", max_attempts=3)
    stale = token(task_id)
    broker.recover_expired(at(61), recovery_max_attempts=3)
    [again] = broker.claim(["default"], 1, "w1", at(200), at(70))
    current = again.attempt_token

    assert broker.renew("w1", {task_id: stale}, at(500), at(71)) == set()
    assert not broker.save_progress(task_id, "w1", {"stale": True}, at(71), attempt_token=stale)
    assert broker.settle([succeed(task_id, "w1", at(72), "stale", attempt=stale)]) == 0
    task = broker.get(task_id)
    assert (task.status, task.lease_expires_at, task.progress) == (RUNNING, at(200), None)

    assert broker.renew("w1", {task_id: current}, at(300), at(73)) == {task_id}
    assert broker.save_progress(task_id, "w1", {"n": 1}, at(74), attempt_token=current)
    assert broker.settle([succeed(task_id, "w1", at(75), "current", attempt=current)]) == 1
    task = broker.get(task_id)
    assert (task.status, task.return_value, task.progress) == (SUCCESSFUL, "current", {"n": 1})


def test_a_wrong_token_is_rejected_while_the_attempt_runs(broker, claimed):
    task_id = claimed("w1")
    forged = "0" * 32

    assert broker.renew("w1", {task_id: forged}, at(500), T0) == set()
    assert not broker.save_progress(task_id, "w1", {"x": 1}, at(1), attempt_token=forged)
    assert broker.settle([succeed(task_id, "w1", at(2), "forged", attempt=forged)]) == 0
    assert broker.get(task_id).status == RUNNING
    assert broker.get(task_id).lease_expires_at == LEASE


# -- running (what the attention notes read) ----------------------------------------------------


def test_running_lists_this_backends_running_tasks_earliest_started_first(
    broker, other_broker, push, claimed
):
    first = claimed("w1")
    finished = claimed("w2")
    broker.settle([succeed(finished, "w2", at(1))])
    push(enqueued_at=at(-5))
    [second] = broker.claim(["default"], 1, "w3", at(90), at(2))
    waiting = push(enqueued_at=at(-5))  # READY: not listed
    push(backend="other", enqueued_at=at(-10))
    [theirs] = other_broker.claim(["default"], 1, "w-other", LEASE, T0)  # another backend's
    assert broker.cancel(second.id, at(3)) == "requested"

    listed = broker.running(10)

    assert [t.id for t in listed] == [first, second.id]
    assert [t.worker_id for t in listed] == ["w1", "w3"]
    assert listed[0].lease_expires_at == LEASE
    assert listed[0].cancel_requested_at is None
    assert listed[1].cancel_requested_at is not None
    assert [t.id for t in broker.running(1)] == [first]
    assert waiting.id not in {t.id for t in listed}
    assert [t.id for t in other_broker.running(10)] == [theirs.id]

"""The contract for tandem's extras: unique keys, cancellation and progress."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tandem.brokers.base import FAILED, READY, RUNNING, Broker, NewTask, Settlement
from tests.contract.conftest import at, succeed, token

pytestmark = pytest.mark.django_db(transaction=True)
W = "worker-a"


def fail(task_id: str, when_seconds: float, *, retry: bool = False) -> Settlement:
    from tandem.brokers.base import ErrorRecord

    return Settlement(
        id=task_id,
        attempt_token=token(task_id),
        worker_id=W,
        status=READY if retry else FAILED,
        finished_at=at(when_seconds),
        error=ErrorRecord(exception_class_path="builtins.ValueError", traceback="boom\n"),
        retry_at=at(when_seconds + 10) if retry else None,
    )


# -- unique keys -------------------------------------------------------------------------------


def test_push_of_an_active_key_returns_the_holder_and_stores_nothing(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    first, again, other, plain = (
        make_task(unique_key="k1"),
        make_task(unique_key="k1"),
        make_task(unique_key="k2"),
        make_task(),
    )
    assert broker.push([first]) == [first.id]
    assert broker.push([again, other, plain]) == [first.id, other.id, plain.id]
    assert broker.get(again.id) is None
    stored = broker.get(first.id)
    assert stored is not None and stored.unique_key == "k1"


def test_a_batch_with_one_key_twice_stores_the_first(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    a, b = make_task(unique_key="same"), make_task(unique_key="same")
    assert broker.push([a, b]) == [a.id, a.id]


def test_running_keeps_the_key_and_finishing_frees_it(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    first = make_task(unique_key="k")
    broker.push([first])
    broker.claim(["default"], 1, W, at(60), at(0))
    assert broker.push([make_task(unique_key="k")]) == [first.id]  # RUNNING holds it
    broker.settle([succeed(first.id, W, at(1))])
    assert broker.get(first.id).unique_key is None  # type: ignore[union-attr]
    later = make_task(unique_key="k")
    assert broker.push([later]) == [later.id]


def test_a_retry_keeps_the_key_and_a_final_failure_frees_it(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    task = make_task(unique_key="r", max_attempts=2)
    broker.push([task])
    broker.claim(["default"], 1, W, at(60), at(0))
    broker.settle([fail(task.id, 1, retry=True)])
    assert broker.push([make_task(unique_key="r")]) == [task.id]
    broker.claim(["default"], 1, W, at(100), at(20))
    broker.settle([fail(task.id, 21)])
    fresh = make_task(unique_key="r")
    assert broker.push([fresh]) == [fresh.id]


def test_keys_are_per_backend(broker: Broker, other_broker: Broker, make_task) -> None:
    mine = make_task(unique_key="shared")
    theirs = make_task(unique_key="shared", backend="other")
    assert broker.push([mine]) == [mine.id]
    assert other_broker.push([theirs]) == [theirs.id]


def test_recovery_that_fails_a_task_frees_its_key(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    task = make_task(unique_key="lost")
    broker.push([task])
    broker.claim(["default"], 1, W, at(5), at(0))
    [recovered] = broker.recover_expired(at(10), recovery_max_attempts=1)
    assert recovered.status == FAILED
    fresh = make_task(unique_key="lost")
    assert broker.push([fresh]) == [fresh.id]


def test_timeout_is_stored(broker: Broker, push: Callable[..., NewTask]) -> None:
    task = push(timeout=2.5)
    assert broker.get(task.id).timeout == 2.5  # type: ignore[union-attr]
    assert broker.get(push().id).timeout is None  # type: ignore[union-attr]


# -- cancellation ------------------------------------------------------------------------------


def test_cancel_fails_a_ready_task_at_once(broker: Broker, push: Callable[..., NewTask]) -> None:
    task = push(unique_key="c")
    assert broker.cancel(task.id, at(3)) == "cancelled"
    stored = broker.get(task.id)
    assert stored is not None
    assert (stored.status, stored.finished_at, stored.unique_key) == (FAILED, at(3), None)
    assert [e.exception_class_path for e in stored.errors] == ["tandem.exceptions.Cancelled"]
    assert broker.claim(["default"], 1, W, at(60), at(4)) == []
    assert broker.cancel(task.id, at(5)) is None  # finished: nothing to cancel


def test_cancel_marks_a_running_task_once(broker: Broker, push: Callable[..., NewTask]) -> None:
    task, bystander = push(), push()
    broker.claim(["default"], 2, W, at(60), at(0))
    assert broker.cancel_requested([task.id, bystander.id]) == set()
    assert broker.cancel(task.id, at(1)) == "requested"
    assert broker.cancel(task.id, at(2)) == "requested"
    stored = broker.get(task.id)
    assert stored is not None
    assert (stored.status, stored.cancel_requested_at) == (RUNNING, at(1))
    assert broker.cancel_requested([task.id, bystander.id]) == {task.id}
    broker.settle([succeed(task.id, W, at(3))])
    assert broker.cancel_requested([task.id]) == set()


def test_cancel_of_unknown_or_foreign_tasks_is_none(
    broker: Broker, other_broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    assert broker.cancel("00000000-0000-0000-0000-000000000000", at(0)) is None
    assert broker.cancel("not-a-uuid", at(0)) is None
    theirs = make_task(backend="other")
    other_broker.push([theirs])
    assert broker.cancel(theirs.id, at(0)) is None
    assert other_broker.get(theirs.id).status == READY  # type: ignore[union-attr]


# -- progress ----------------------------------------------------------------------------------


def test_progress_is_saved_under_the_lease_and_survives_a_retry(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    task = make_task(max_attempts=2)
    broker.push([task])
    broker.claim(["default"], 1, W, at(60), at(0))
    first = token(task.id)
    assert broker.save_progress(
        task.id, W, {"done": 3, "note": "ünïcode"}, at(1), attempt_token=first
    )
    assert not broker.save_progress(
        task.id, "someone-else", {"done": 99}, at(2), attempt_token=first
    )
    stored = broker.get(task.id)
    assert stored is not None
    assert (stored.progress, stored.progress_at) == ({"done": 3, "note": "ünïcode"}, at(1))
    broker.settle([fail(task.id, 2, retry=True)])
    # not running
    assert broker.save_progress(task.id, W, {"done": 4}, at(3), attempt_token=first) is False
    [again] = broker.claim(["default"], 1, W, at(100), at(20))
    assert again.progress == {"done": 3, "note": "ünïcode"}  # the checkpoint to resume from

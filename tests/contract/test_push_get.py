"""push, get and has_ready: what goes in comes back out, and only claimable work counts."""

from __future__ import annotations

import uuid

import pytest

from tandem.brokers.base import READY, ErrorRecord, Settlement
from tests.contract.conftest import ALIAS, T0, at, succeed, token

pytestmark = pytest.mark.django_db

NESTED_ARGS = [
    {"when": "2030-01-01T12:00:00+00:00", "ids": [1, 2, 3], "nested": {"deep": [None, True]}},
    "ünïcødé ✓",
    1.5,
    -7,
    None,
    False,
    [],
    {},
]


def test_push_then_get_round_trips_every_field(broker, make_task):
    new = make_task(
        queue_name="critical",
        task_path="tests.tasks.echo",
        priority=42,
        takes_context=True,
        args=NESTED_ARGS,
        kwargs={"key": "value", "list": [1, {"a": None}], "n": 2**40},
        run_after=at(30),
        enqueued_at=T0,
        max_attempts=5,
    )
    broker.push([new])

    stored = broker.get(new.id)

    assert stored is not None
    assert stored.id == new.id
    assert stored.backend == ALIAS
    assert stored.queue_name == "critical"
    assert stored.task_path == "tests.tasks.echo"
    assert stored.priority == 42
    assert stored.takes_context is True
    assert stored.status == READY
    assert stored.args == NESTED_ARGS
    assert stored.kwargs == {"key": "value", "list": [1, {"a": None}], "n": 2**40}
    assert stored.run_after == at(30)
    assert stored.available_at == at(30)
    assert stored.enqueued_at == T0
    assert stored.max_attempts == 5
    assert (stored.started_at, stored.last_attempted_at, stored.finished_at) == (None, None, None)
    assert stored.return_value is None
    assert stored.errors == ()
    assert stored.worker_ids == ()
    assert stored.attempts == 0
    assert stored.worker_id == ""
    assert stored.lease_expires_at is None


def test_available_at_is_enqueued_at_without_run_after(broker, push):
    new = push(run_after=None, enqueued_at=T0)

    stored = broker.get(new.id)

    assert stored.run_after is None
    assert stored.available_at == T0


def test_push_stores_a_batch(broker, make_task):
    batch = [make_task(args=[i]) for i in range(5)]

    broker.push(batch)

    assert [broker.get(t.id).args for t in batch] == [[i] for i in range(5)]


def test_get_accepts_any_spelling_of_the_uuid(broker, push):
    new = push()
    value = uuid.UUID(new.id)

    assert broker.get(new.id.upper()).id == new.id
    assert broker.get(value.hex).id == new.id
    assert broker.get(str(value)).id == new.id


def test_get_unknown_id_is_none(broker, push):
    push()

    assert broker.get(str(uuid.uuid4())) is None


@pytest.mark.parametrize("bad_id", ["", "not-a-uuid", "123", "' OR 1=1 --", "0" * 33])
def test_get_malformed_id_is_none(broker, push, bad_id):
    push()

    assert broker.get(bad_id) is None


def test_has_ready(broker, push):
    assert broker.has_ready(["default"], T0) is False

    push(queue_name="default", run_after=None, enqueued_at=T0)

    assert broker.has_ready(["default"], T0) is True
    assert broker.has_ready(["default", "critical"], T0) is True
    assert broker.has_ready(["critical"], T0) is False
    assert broker.has_ready(["default"], at(-0.000001)) is False


def test_has_ready_ignores_future_other_backend_and_running_tasks(broker, push):
    push(run_after=at(10))
    push(backend="other", enqueued_at=T0)
    running = push(enqueued_at=T0, priority=100)
    claimed = broker.claim(["default"], 1, "w1", at(60), T0)
    assert [t.id for t in claimed] == [running.id]

    assert broker.has_ready(["default"], T0) is False
    assert broker.has_ready(["default"], at(10)) is True


def test_has_ready_ignores_finished_tasks(broker, push):
    new = push(enqueued_at=T0)
    broker.claim(["default"], 1, "w1", at(60), T0)
    broker.settle([succeed(new.id, "w1", at(1))])

    assert broker.has_ready(["default"], at(100)) is False


def test_errors_round_trip_in_order(broker, push):
    new = push(enqueued_at=T0, max_attempts=3)
    first = ErrorRecord(exception_class_path="builtins.ValueError", traceback="one ✗\n")
    second = ErrorRecord(exception_class_path="builtins.KeyError", traceback="two\n")

    broker.claim(["default"], 1, "w1", at(60), T0)
    broker.settle(
        [
            Settlement(
                id=new.id,
                attempt_token=token(new.id),
                worker_id="w1",
                status=READY,
                finished_at=at(1),
                error=first,
                retry_at=at(2),
            )
        ]
    )
    broker.claim(["default"], 1, "w2", at(60), at(2))
    broker.settle(
        [
            Settlement(
                id=new.id,
                attempt_token=token(new.id),
                worker_id="w2",
                status="FAILED",
                finished_at=at(3),
                error=second,
            )
        ]
    )

    assert broker.get(new.id).errors == (first, second)


TRACE = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "vendor=value",
}


def test_the_trace_context_is_stored_with_the_task_and_claimed_with_it(broker, make_task):
    traced = make_task(trace_context=TRACE)
    plain = make_task()
    many = [make_task(trace_context={**TRACE, "n": str(i)}) for i in range(3)]  # one statement
    broker.push([traced, plain])
    broker.push(many)
    assert broker.get(traced.id).trace_context == TRACE
    assert broker.get(plain.id).trace_context is None
    claimed = {t.id: t for t in broker.claim(["default"], 10, "w1", at(60), T0)}
    assert claimed[traced.id].trace_context == TRACE
    assert claimed[plain.id].trace_context is None
    assert [claimed[t.id].trace_context["n"] for t in many] == ["0", "1", "2"]

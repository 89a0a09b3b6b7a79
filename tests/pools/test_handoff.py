"""How a subinterpreter pool hands a task over and its outcome back (``pools.handoff``): as a
tuple of values an ``interpreters`` queue shares without pickling, decoded to an equal object —
every field, with its type — or, when a value has no exact encoding, as the object itself."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tandem.brokers.base import ErrorRecord, StoredTask
from tandem.execution import Outcome
from tandem.worker.pools.handoff import decode, encode

AT = datetime(2026, 12, 7, 15, 4, 5, 123456, tzinfo=UTC)
ERROR = ErrorRecord(exception_class_path="builtins.ValueError", traceback="Traceback ...\n")


def full_task() -> StoredTask:
    """A task with every field set, none to its default."""
    return StoredTask(
        id="t-1",
        backend="default",
        queue_name="exports",
        task_path="tests.tasks.echo",
        priority=-7,
        takes_context=True,
        status="RUNNING",
        args=[1, "two", [3.5, None], {"k": True}],
        kwargs={"a": [1, 2], "b": {"c": None}},
        run_after=AT - timedelta(days=1),
        available_at=AT - timedelta(hours=1),
        enqueued_at=datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),  # before the epoch
        started_at=AT,
        last_attempted_at=AT + timedelta(microseconds=1),
        finished_at=AT + timedelta(seconds=2),
        return_value={"x": [1, 2, 3]},
        errors=(ERROR, ErrorRecord(exception_class_path="tandem.X", traceback="")),
        worker_ids=("w-1", "w-2"),
        max_attempts=3,
        worker_id="w-2",
        lease_expires_at=AT + timedelta(minutes=5),
        timeout=2.5,
        unique_key="u",
        progress={"done": 3, "of": 10, "pair": (1, 2.0), "ok": True, "none": None},
        progress_at=AT + timedelta(seconds=1),
        cancel_requested_at=AT + timedelta(seconds=3),
        attempt_token="tok",
        trace_context={"traceparent": "00-abc-def-01"},
        concurrency_key="ck",
        concurrency_limit=4,
        on_limit="discard",
        rate_limit="10/s",
    )


def bare_task() -> StoredTask:
    """A task with every optional field None or empty."""
    return StoredTask(
        id="t-2",
        backend="default",
        queue_name="default",
        task_path="tests.tasks.noop",
        priority=0,
        takes_context=False,
        status="RUNNING",
        args=[],
        kwargs={},
        run_after=None,
        available_at=AT,
        enqueued_at=AT,
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        return_value=None,
        errors=(),
        worker_ids=(),
        max_attempts=1,
        worker_id="w",
        lease_expires_at=None,
    )


OUTCOMES = [
    Outcome(task_id="t", worker_id="w", succeeded=True, finished_at=AT),
    Outcome(
        task_id="t",
        worker_id="w",
        succeeded=False,
        finished_at=AT,
        return_value=[1, {"a": "b"}],
        error=ERROR,
        retriable=False,
        attempt_token="tok",
        finished_signal=True,
    ),
]


def shareable(value: Any) -> bool:
    if isinstance(value, tuple) and type(value) is tuple:
        return all(shareable(item) for item in value)
    return type(value) in (type(None), bool, int, float, str, bytes)


def assert_same(decoded: Any, original: Any) -> None:
    assert type(decoded) is type(original)
    for field in dataclasses.fields(original):
        mine, theirs = getattr(decoded, field.name), getattr(original, field.name)
        assert mine == theirs, field.name
        assert type(mine) is type(theirs), field.name
        assert repr(mine) == repr(theirs), field.name  # nested types too: 1 and True, () and []
        if isinstance(theirs, datetime):
            assert mine.tzinfo is theirs.tzinfo, field.name
    assert decoded == original


@pytest.mark.parametrize(
    "item",
    [full_task(), bare_task(), *OUTCOMES],
    ids=["full-task", "bare-task", "success", "failure"],
)
def test_round_trip_keeps_every_field(item: Any) -> None:
    encoded = encode(item)
    assert isinstance(encoded, tuple) and shareable(encoded)  # crosses without a pickle
    assert len(encoded) == 1 + len(dataclasses.fields(item))
    assert_same(decode(encoded), item)


def test_every_field_of_the_full_task_differs_from_its_default() -> None:
    """So a field the encoding dropped (and the dataclass defaulted) fails the round trip."""
    task = full_task()
    for field in dataclasses.fields(StoredTask):
        if field.default is not dataclasses.MISSING:
            assert getattr(task, field.name) != field.default, field.name


@pytest.mark.parametrize(
    "change",
    [
        {"started_at": AT.astimezone(timezone(timedelta(hours=2)))},  # not UTC
        {"started_at": AT.replace(tzinfo=None)},  # naive
        {"worker_ids": ["w"]},  # a list where a tuple is declared
        {"id": type("Id", (str,), {})("t-1")},  # a str subclass
        {"args": [object()]},  # not JSON-like
    ],
    ids=["not-utc", "naive", "list-for-tuple", "str-subclass", "not-json"],
)
def test_values_without_an_exact_encoding_cross_as_the_object(change: dict[str, Any]) -> None:
    task = dataclasses.replace(full_task(), **change)
    encoded = encode(task)
    assert encoded is task
    assert decode(encoded) is task

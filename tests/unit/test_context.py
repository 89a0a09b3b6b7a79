"""tandem's ``TaskContext``: throttled progress, the checkpoint, cancellation reads."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.tasks import TaskContext as DjangoTaskContext

from tandem.backends.base import to_task_result
from tandem.brokers.base import NewTask, StoredTask
from tandem.brokers.memory import MemoryBroker
from tandem.context import TaskContext
from tandem.exceptions import Cancelled
from tandem.serialization import NotJSONError

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def running(broker: MemoryBroker, progress: Any = None) -> StoredTask:
    task_id = str(uuid.uuid4())
    broker.push(
        [
            NewTask(
                id=task_id,
                backend="default",
                queue_name="default",
                task_path="tests.tasks.with_context",
                priority=0,
                takes_context=True,
                args=[1],
                kwargs={},
                run_after=None,
                enqueued_at=NOW,
            )
        ]
    )
    [stored] = broker.claim(["default"], 1, "w", NOW + timedelta(minutes=1), NOW)
    return replace(stored, progress=progress)


def make(broker: MemoryBroker, stored: StoredTask) -> TaskContext:
    return TaskContext(task_result=to_task_result(stored), broker=broker, stored=stored)


def test_is_djangos_task_context() -> None:
    broker = MemoryBroker()
    context = make(broker, running(broker))
    assert isinstance(context, DjangoTaskContext)
    assert context.attempt == 1


def test_progress_is_throttled_then_flushed() -> None:
    broker = MemoryBroker()
    stored = running(broker, progress={"done": 2})
    context = make(broker, stored)
    assert context.checkpoint == {"done": 2}  # an earlier attempt's
    assert context.save_progress({"done": 3}) is True  # the first write goes through
    assert context.save_progress({"done": 4}) is False  # held back
    assert context.checkpoint == {"done": 4}
    assert broker.get(stored.id).progress == {"done": 3}  # type: ignore[union-attr]
    context.flush()
    assert broker.get(stored.id).progress == {"done": 4}  # type: ignore[union-attr]
    assert context.save_progress({"done": 5}, force=True) is True


def test_progress_must_be_json_and_a_lost_lease_stops_writes() -> None:
    broker = MemoryBroker()
    stored = running(broker)
    context = make(broker, stored)
    with pytest.raises(NotJSONError, match=r"progress\['at'\] is a datetime.datetime"):
        context.save_progress({"at": NOW})
    broker.release("w", {stored.id: stored.attempt_token}, NOW)  # the lease is gone
    assert context.save_progress({"done": 1}, force=True) is False
    assert broker.get(stored.id).progress is None  # type: ignore[union-attr]


def test_cancellation_is_read_from_the_store() -> None:
    broker = MemoryBroker()
    stored = running(broker)
    context = make(broker, stored)
    assert context.cancelled is False
    context.raise_if_cancelled()
    broker.cancel(stored.id, NOW)
    context._state["checked_at"] = float("-inf")  # skip the read throttle
    assert context.cancelled is True
    with pytest.raises(Cancelled, match=f"task {stored.id} was cancelled while it ran"):
        context.raise_if_cancelled()

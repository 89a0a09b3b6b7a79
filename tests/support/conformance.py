"""Helpers for the conformance tests that reach below Django's API, through the broker contract.

Counting stored tasks and planting a row that no ``enqueue()`` would write go through
``backend.broker`` (the one storage interface every tandem backend implements), so these helpers
hold for any backend.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from django.dispatch import Signal
from django.utils import timezone

from tandem.backends.base import TandemBackend
from tandem.brokers.base import NewTask
from tandem.brokers.database import DatabaseBroker
from tandem.models import TaskRecord


def stored_count(backend: TandemBackend) -> int:
    """How many tasks the backend holds, in any status."""
    return sum(s.ready + s.running + s.failed + s.successful for s in backend.broker.stats())


def store_row(
    backend: TandemBackend, task_path: str, args: Sequence[Any] = (), max_attempts: int = 1
) -> str:
    """Store a READY task naming ``task_path``, bypassing ``enqueue()``; return its id.

    This is what a tampered or stale store looks like: a row naming something that is not a
    registered task. On the database backend the row is written through the model directly.
    """
    now = timezone.now()
    if isinstance(backend.broker, DatabaseBroker):
        record = TaskRecord.objects.create(
            backend=backend.alias,
            task_path=task_path,
            args=list(args),
            available_at=now,
            enqueued_at=now,
            max_attempts=max_attempts,
        )
        return str(record.id)
    new = NewTask(
        id=str(uuid.uuid4()),
        backend=backend.alias,
        queue_name="default",
        task_path=task_path,
        priority=0,
        takes_context=False,
        args=list(args),
        kwargs={},
        run_after=None,
        enqueued_at=now,
        max_attempts=max_attempts,
    )
    backend.broker.push([new])
    return new.id


@contextmanager
def capture(signal: Signal) -> Iterator[list[dict[str, Any]]]:
    """Record every send of ``signal`` (from any thread) while the block runs."""
    events: list[dict[str, Any]] = []

    def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
        events.append(
            {
                "sender": sender,
                "id": task_result.id,
                "status": task_result.status,
                "exc_type": sys.exc_info()[0],
                "errors": [e.traceback for e in task_result.errors],
                "thread": threading.current_thread().name,
            }
        )

    uid = f"conformance-{uuid.uuid4()}"
    signal.connect(receiver, weak=False, dispatch_uid=uid)
    try:
        yield events
    finally:
        signal.disconnect(dispatch_uid=uid)


def run_async(function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run a coroutine function from a sync test, the way a sync caller would (async_to_sync).

    Django's async ORM calls inside it run on this thread, so they see the test's database.
    """
    return async_to_sync(function)(*args)

"""Run ONE claimed task and describe how it ended. Pure and pool-agnostic.

``execute()`` never writes task state: it returns an ``Outcome`` that the supervisor settles. It
sends Django's ``task_started`` / ``task_finished`` signals where the task runs (``task_finished``
from inside the ``except`` block on failure, as Django does), with the backend class as sender.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.tasks import TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from tandem.backends.base import TandemBackend, resolve_task, to_task_result
from tandem.brokers.base import ErrorRecord, StoredTask
from tandem.context import TaskContext
from tandem.exceptions import Cancelled, LeaseLost, TaskNotRunnable
from tandem.serialization import to_json

logger = logging.getLogger("tandem.worker")


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one attempt ended. ``retriable`` is False when the row can never run."""

    task_id: str
    worker_id: str
    succeeded: bool
    finished_at: datetime
    return_value: Any = None
    error: ErrorRecord | None = None
    retriable: bool = True
    attempt_token: str = ""  # the attempt this outcome ends (an outcome of a stale one is dropped)


def error_record(exc: BaseException) -> ErrorRecord:
    kind = type(exc)
    return ErrorRecord(
        exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
        traceback="".join(traceback.format_exception(exc)),
    )


def failed(stored: StoredTask, exc: BaseException, *, retriable: bool = True) -> Outcome:
    """The outcome of an attempt that failed outside the task's own code."""
    return Outcome(
        task_id=stored.id,
        worker_id=stored.worker_id,
        attempt_token=stored.attempt_token,
        succeeded=False,
        finished_at=timezone.now(),
        error=error_record(exc),
        retriable=retriable,
    )


def execute(stored: StoredTask, current: Callable[[], bool] | None = None) -> Outcome:
    """Run the claimed ``stored`` task once; never raises for anything the task does.

    ``current`` tells whether this attempt still holds its lease (the thread pool's abandoned
    attempts do not): ``task_finished`` is sent only for an attempt that ended while current,
    never for one its worker stopped (``LeaseLost``) — a newer attempt decides the ending.
    """
    try:
        task = resolve_task(stored.task_path)
        result = to_task_result(stored, task)
        sender = type(result.task.get_backend())
    except TaskNotRunnable as exc:
        logger.error("task %s (%s) cannot run: %s", stored.id, stored.task_path, exc)
        return failed(stored, exc, retriable=False)
    except Exception as exc:  # e.g. the row names a backend alias this process does not have
        return failed(stored, exc, retriable=False)

    task_started.send(sender=sender, task_result=result)
    try:
        if result.task.takes_context:
            backend = result.task.get_backend()
            assert isinstance(backend, TandemBackend)  # to_task_result() used this row's alias
            context = TaskContext(task_result=result, broker=backend.broker, stored=stored)
            try:
                raw = result.task.call(context, *result.args, **result.kwargs)
            finally:
                context.flush()
        else:
            raw = result.task.call(*result.args, **result.kwargs)
        return_value = to_json(raw, "the return value")
    except BaseException as exc:
        finished_at = timezone.now()
        error = error_record(exc)
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        object.__setattr__(result, "finished_at", finished_at)
        result.errors.append(
            TaskError(exception_class_path=error.exception_class_path, traceback=error.traceback)
        )
        if not isinstance(exc, LeaseLost) and (current is None or current()):
            task_finished.send(sender=sender, task_result=result)
        return Outcome(
            task_id=stored.id,
            worker_id=stored.worker_id,
            attempt_token=stored.attempt_token,
            succeeded=False,
            finished_at=finished_at,
            error=error,
            retriable=not isinstance(exc, Cancelled),  # a cancelled task is never retried
        )
    finished_at = timezone.now()
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", finished_at)
    object.__setattr__(result, "_return_value", return_value)
    if current is None or current():
        task_finished.send(sender=sender, task_result=result)
    return Outcome(
        task_id=stored.id,
        worker_id=stored.worker_id,
        attempt_token=stored.attempt_token,
        succeeded=True,
        finished_at=finished_at,
        return_value=return_value,
    )

"""Run ONE claimed task and describe how it ended. Pure and pool-agnostic.

``execute()`` never writes task state: it returns an ``Outcome`` that the supervisor settles. It
sends Django's ``task_started`` signal where the task runs, with the backend class as sender.
``task_finished`` is not sent here: the outcome says whether it is due (``finished_signal``), and
the worker's main interpreter sends it once the store has taken this attempt's ending
(``tandem.worker.signalling``), so only the attempt whose ending is stored sends it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.tasks.signals import task_started
from django.utils import timezone

from tandem import tracing
from tandem.backends.base import TandemBackend, resolve_task, to_task_result
from tandem.brokers.base import ErrorRecord, StoredTask
from tandem.context import TaskContext
from tandem.exceptions import Cancelled, LeaseLost, TaskNotRunnable, TaskTimeout
from tandem.logging import attempt
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
    #: Whether ``task_finished`` is due once this ending is stored: the task ran (``task_started``
    #: was sent) and was not stopped by its worker (``LeaseLost``, an abandoned thread).
    finished_signal: bool = False


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


def _prepare(stored: StoredTask) -> tuple[Any, type] | Outcome:
    """The task's result object and signal sender, or the outcome of a row that cannot run."""
    try:
        task = resolve_task(stored.task_path)
        result = to_task_result(stored, task)
        sender = type(result.task.get_backend())
    except TaskNotRunnable as exc:
        logger.error("task %s (%s) cannot run: %s", stored.id, stored.task_path, exc)
        return failed(stored, exc, retriable=False)
    except Exception as exc:  # e.g. the row names a backend alias this process does not have
        return failed(stored, exc, retriable=False)
    return result, sender


def _context(stored: StoredTask, result: Any) -> TaskContext:
    backend = result.task.get_backend()
    assert isinstance(backend, TandemBackend)  # to_task_result() used this row's alias
    return TaskContext(task_result=result, broker=backend.broker, stored=stored)


def _failure(stored: StoredTask, exc: BaseException, current: bool) -> Outcome:
    """The outcome of a task that raised ``exc`` (``current``: its attempt was not stopped)."""
    return Outcome(
        task_id=stored.id,
        worker_id=stored.worker_id,
        attempt_token=stored.attempt_token,
        succeeded=False,
        finished_at=timezone.now(),
        error=error_record(exc),
        retriable=not isinstance(exc, Cancelled),  # a cancelled task is never retried
        finished_signal=current and not isinstance(exc, LeaseLost),
    )


def _success(stored: StoredTask, return_value: Any, current: bool) -> Outcome:
    return Outcome(
        task_id=stored.id,
        worker_id=stored.worker_id,
        attempt_token=stored.attempt_token,
        succeeded=True,
        finished_at=timezone.now(),
        return_value=return_value,
        finished_signal=current,
    )


def execute(stored: StoredTask, current: Callable[[], bool] | None = None) -> Outcome:
    """Run the claimed ``stored`` task once; never raises for anything the task does.

    ``current`` tells whether this attempt still holds its lease (the thread pool's abandoned
    attempts do not): an attempt that ended while not current, or that its worker stopped
    (``LeaseLost``), never gets ``task_finished`` (``Outcome.finished_signal``) — a newer attempt
    decides the ending. The others get it once their ending is stored.
    """
    with attempt(stored), tracing.consumer(stored) as span:
        return _execute(stored, current, span)


def _execute(stored: StoredTask, current: Callable[[], bool] | None, span: Any) -> Outcome:
    prepared = _prepare(stored)
    if isinstance(prepared, Outcome):
        tracing.ended(span, prepared)
        return prepared
    result, sender = prepared
    task_started.send(sender=sender, task_result=result)
    try:
        if result.task.takes_context:
            context = _context(stored, result)
            try:
                raw = result.task.call(context, *result.args, **result.kwargs)
            finally:
                context.flush()
        else:
            raw = result.task.call(*result.args, **result.kwargs)
        return_value = _returned(raw)
    except BaseException as exc:
        tracing.failed(span, exc)
        return _failure(stored, exc, current is None or current())
    return _success(stored, return_value, current is None or current())


def _returned(raw: Any) -> Any:
    """The return value as it is stored and read back (``to_json``): None, the most common,
    without a JSON round trip."""
    return None if raw is None else to_json(raw, "the return value")


def is_coroutine_task(stored: StoredTask) -> bool:
    """Whether ``stored`` names an ``async def`` task (False when it cannot be resolved here:
    the worker that runs it reports why)."""
    try:
        task = resolve_task(stored.task_path)
    except Exception:
        return False
    return inspect.iscoroutinefunction(task.func)


async def aexecute(
    stored: StoredTask, timeout: float | None = None, current: Callable[[], bool] | None = None
) -> Outcome:
    """``execute()`` for an ``async def`` task, awaited on the worker's event loop.

    The coroutine runs on the loop; everything synchronous around it (``task_started``,
    progress writes, Django's ORM from the task through ``sync_to_async``) runs in a thread of
    this attempt's own (``ThreadSensitiveContext``), so each attempt has its own database
    connections, closed when it ends. ``timeout`` (seconds) cancels the coroutine at the
    deadline with ``TaskTimeout``; cancelling the awaiting ``asyncio`` task (``tandem.cancel``,
    a lost lease) cancels the coroutine too. Code that blocks the loop without awaiting cannot
    be interrupted.
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tandem-attempt")
    try:
        # (this coroutine's own context: its records and spans are its own)
        with attempt(stored), tracing.consumer(stored) as span:
            return await _aexecute(stored, timeout, current, executor, span)
    finally:
        executor.shutdown(wait=False)


async def _aexecute(
    stored: StoredTask,
    timeout: float | None,
    current: Callable[[], bool] | None,
    executor: ThreadPoolExecutor,
    span: Any,
) -> Outcome:
    from asgiref.sync import sync_to_async
    from django.db import connections

    async with _attempt_context(executor):
        try:
            prepared = await sync_to_async(_prepare)(stored)
            if isinstance(prepared, Outcome):
                tracing.ended(span, prepared)
                return prepared
            result, sender = prepared
            await sync_to_async(task_started.send)(sender=sender, task_result=result)
            context = _context(stored, result) if result.task.takes_context else None
            args = (context, *result.args) if context is not None else tuple(result.args)
            try:
                try:
                    async with asyncio.timeout(timeout) as deadline:
                        raw = await result.task.func(*args, **result.kwargs)
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    raise TaskTimeout(
                        f"the task ran longer than its timeout of {timeout:g}s; its coroutine "
                        "was cancelled."
                    ) from None
                finally:
                    if context is not None:
                        await sync_to_async(context.flush)()
                return_value = _returned(raw)
            except BaseException as exc:
                tracing.failed(span, exc)
                return _failure(stored, exc, current is None or current())
            return _success(stored, return_value, current is None or current())
        finally:
            await sync_to_async(connections.close_all)()


def _attempt_context(executor: ThreadPoolExecutor) -> Any:
    """Django's thread-sensitive calls of one attempt go to ``executor``'s thread (asgiref >=
    3.13 takes an executor of the caller's; before, asgiref makes one of its own and shuts it
    down on a daemon thread, which a subinterpreter refuses)."""
    from asgiref.sync import ThreadSensitiveContext

    try:
        return ThreadSensitiveContext(executor=executor)  # type: ignore[call-arg,unused-ignore]
    except TypeError:
        return ThreadSensitiveContext()

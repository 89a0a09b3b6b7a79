"""Django's ``task_finished`` signal, sent by the worker once an attempt's ending is stored.

An attempt may end and *then* lose its lease before its ending is written (a pause in that
instant): the store rejects that stale ending (writes out of RUNNING are fenced by the attempt
token), and the attempt that holds the lease now decides the task's ending. So ``task_finished``
is not sent where the task ran but here, in the worker process's main interpreter, after the
supervisor's settlement write committed, and only for the endings the store took
(``Settler.settle()`` says which). Receivers see the row already updated, as with Django's
database backend (saved, then signalled).

Sends happen in order on one thread of their own, ``tandem-signals``, so a slow receiver never
holds up the claim loop; ``close()`` (the supervisor's shutdown) sends the pending ones before
the worker exits. Each send is ``send_robust()``: a receiver that raises is logged and the
others still run; the attempt's ending is already stored and stays as it is.

The ``TaskResult`` is built only when someone would observe it: a receiver other than Django's
own ``log_task_finished``, or that receiver with the ``django.tasks`` logger enabled for the
line's level (ERROR for a failure, INFO otherwise). It is sent outside any ``except`` block, so
Django's line for a failure has no traceback: it is on ``task_result.errors[-1].traceback``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.tasks import TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.signals import log_task_finished, task_finished
from django.utils.log import RequireDebugFalse, RequireDebugTrue

from tandem.backends.base import to_task_result
from tandem.brokers.base import SUCCESSFUL, Settlement, StoredTask
from tandem.execution import Outcome
from tandem.logging import attempt

logger = logging.getLogger("tandem.worker")
_django_logger = logging.getLogger("django.tasks")

_Send = tuple[type, StoredTask, Settlement]


def finished_result(task: StoredTask, settlement: Settlement) -> Any:
    """Django's ``TaskResult`` of the attempt ``settlement`` ended, as stored: ``task`` (the row
    as claimed) with the attempt's status (SUCCESSFUL, or FAILED whether retried or not), its
    ``finished_at``, its error (with the traceback) last in ``errors``, its return value."""
    result = to_task_result(task)
    object.__setattr__(result, "finished_at", settlement.finished_at)
    if settlement.status == SUCCESSFUL:
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", settlement.return_value)
        return result
    object.__setattr__(result, "status", TaskResultStatus.FAILED)
    if settlement.error is not None:
        error = settlement.error
        result.errors.append(
            TaskError(exception_class_path=error.exception_class_path, traceback=error.traceback)
        )
    return result


def observed(sender: type, succeeded: bool) -> bool:
    """Whether a ``task_finished`` send from ``sender`` would reach anyone: a receiver other than
    Django's log line, or that line at a level its logger writes."""
    try:
        sync_receivers, async_receivers = task_finished._live_receivers(sender)
    except Exception:  # a Django without this (private) method: just send
        return True
    receivers = [*sync_receivers, *async_receivers]
    if any(r is not log_task_finished for r in receivers):
        return True
    level = logging.INFO if succeeded else logging.ERROR
    return bool(receivers) and written(_django_logger, level)


def written(logger: logging.Logger, level: int) -> bool:
    """Whether a record of ``level`` on ``logger`` may be written by a handler: the logger is
    enabled for it, and a handler on its way up (or logging's last resort, when there is none)
    takes that level. Filters are assumed to let it through, but for those known to decide
    without looking at the record: Django's ``RequireDebugTrue``/``RequireDebugFalse`` (Django's
    default logging: its INFO lines reach only the console handler, and that only with DEBUG
    on) and tandem's ``AttemptFilter``, which never drops one."""
    if logger.disabled or not logger.isEnabledFor(level):
        return False
    if not all(_passes(f) for f in logger.filters):
        return False
    found = 0
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            found += 1
            if isinstance(handler, logging.NullHandler) or level < handler.level:
                continue
            if all(_passes(f) for f in handler.filters):
                return True
        current = current.parent if current.propagate else None
    last_resort = logging.lastResort
    return found == 0 and last_resort is not None and level >= last_resort.level


def _passes(log_filter: Any) -> bool:
    """Whether ``log_filter`` lets a ``django.tasks`` record through: False only for the filters
    known to drop every record now, whatever it holds (see ``written``)."""
    if isinstance(log_filter, RequireDebugFalse | RequireDebugTrue):
        return bool(log_filter.filter(None))  # type: ignore[arg-type]  # (looks at DEBUG only)
    return True


class FinishedSignals:
    """The ``tandem-signals`` thread of one supervisor: a FIFO of ``task_finished`` sends."""

    def __init__(self) -> None:
        self._queue: queue.Queue[_Send | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0
        #: ``observed()`` per (sender, succeeded) for the current batch of endings (``batch()``).
        self._observed: dict[tuple[type, bool], bool] = {}

    def batch(self) -> None:
        """A new batch of endings follows: ask again who observes them (receivers and logging
        may have changed since the last batch; within one batch, asking once per sender and
        status is enough)."""
        self._observed.clear()

    def stored(
        self, sender: type, task: StoredTask, outcome: Outcome, settlement: Settlement
    ) -> None:
        """``outcome`` ended ``task``'s attempt and the store took ``settlement`` as its ending:
        send ``task_finished`` (later, on the signals thread) when it is due and observed."""
        if not outcome.finished_signal:
            return
        key = (sender, settlement.status == SUCCESSFUL)
        seen = self._observed.get(key)
        if seen is None:
            seen = self._observed[key] = observed(*key)
        if not seen:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="tandem-signals", daemon=True
                )
                self._thread.start()
            self._queue.put((sender, task, settlement))

    def _run(self, sends: queue.Queue[_Send | None]) -> None:
        from django.db import close_old_connections, connections

        try:
            while (item := sends.get()) is not None:
                try:
                    self._send(*item)
                    if sends.empty():  # idle: as after a request (CONN_MAX_AGE)
                        with contextlib.suppress(Exception):
                            close_old_connections()
                finally:
                    sends.task_done()
            sends.task_done()
        finally:
            connections.close_all()  # this thread's connections (a receiver's queries)

    def _send(self, sender: type, task: StoredTask, settlement: Settlement) -> None:
        try:
            with attempt(task):
                result = finished_result(task, settlement)
                # A receiver that raises is logged by Django (``django.dispatch``, with its
                # traceback and this attempt's fields); the others still run.
                task_finished.send_robust(sender=sender, task_result=result)
            self.sent += 1
        except BaseException:  # (not an Exception, or the result could not be built)
            logger.exception("could not send task_finished for task %s", task.id)

    def flush(self) -> None:
        """Wait until every send queued so far was made."""
        self._queue.join()

    def close(self, give_up: Callable[[], bool] = lambda: False) -> None:
        """Send what is pending, then end the thread (a later send starts a new one).

        ``give_up()`` is asked while a receiver still runs: True stops the wait (a second stop
        request while draining); the sends still pending are logged as not sent."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            sends, self._queue = self._queue, queue.Queue()  # (a later thread's own)
            sends.put(None)
        while thread.is_alive():
            thread.join(0.1)
            if thread.is_alive() and give_up():
                logger.warning(
                    "exiting without sending task_finished for %d stored ending(s): a receiver "
                    "is still running",
                    sends.qsize(),  # (the end marker stands for the running one)
                )
                return


__all__ = ["FinishedSignals", "finished_result", "observed", "written"]

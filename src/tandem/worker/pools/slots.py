"""Worker slots and the deadline monitor every pool shares.

A ``Slot`` is one worker's seat in a pool: the task it runs and that task's deadline. Whoever ends
the attempt first — the worker delivering its outcome or the monitor declaring a timeout — is the
only one that delivers; the other's result is discarded. A slot whose worker overran its deadline
is *retired*: never given work again, and replaced by the pool.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from django.utils import timezone

from tandem.brokers.base import ErrorRecord, StoredTask
from tandem.execution import Outcome

Deliver = Callable[[Outcome], None]

#: How much lower than the web side task workers run (``nice`` steps, Linux: per thread), where
#: the idle scheduling class is not available.
TASK_NICENESS = 10


def lower_priority(niceness: int = TASK_NICENESS) -> None:
    """Make the calling OS thread yield the CPU to the web side when cores are contended.

    On Linux the thread moves to the ``SCHED_IDLE`` class: it runs whenever a core is free, and
    a request thread that wakes takes the core from it at once (``nice`` alone still leaves a
    woken request waiting behind a task's time slice). Only the calling thread changes (a thread
    id is a valid target), never the HTTP threads beside it. Where that class is missing, the
    thread is niced instead; elsewhere this does nothing.
    """
    thread = threading.get_native_id()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))


def ended_outcome(
    task: StoredTask, exception: str, message: str, *, retriable: bool = True
) -> Outcome:
    """An attempt that tandem ended from outside the task's code, as ``tandem.exceptions.X``.

    It gets its ``task_finished`` (FAILED) once the store takes this ending, like an attempt
    whose code raised: its ``task_started`` was sent where it ran."""
    path = f"tandem.exceptions.{exception}"
    return Outcome(
        task_id=task.id,
        worker_id=task.worker_id,
        attempt_token=task.attempt_token,
        succeeded=False,
        finished_at=timezone.now(),
        error=ErrorRecord(exception_class_path=path, traceback=f"{path}: {message}\n"),
        retriable=retriable,
        finished_signal=True,
    )


def timeout_outcome(task: StoredTask, timeout: float, how: str) -> Outcome:
    message = f"the task ran longer than its timeout of {timeout:g}s; {how}"
    return ended_outcome(task, "TaskTimeout", message)


def cancelled_outcome(task: StoredTask, how: str) -> Outcome:
    message = f"the task was cancelled while it ran; {how}"
    return ended_outcome(task, "Cancelled", message, retriable=False)


def crash_outcome(task: StoredTask, what: str) -> Outcome:
    return ended_outcome(task, "WorkerCrashed", what)


class Mailbox(Protocol):
    """Where an idle worker waits for its next task (``STOP``: None): a ``queue.SimpleQueue``,
    or a subinterpreter worker's ``Inbox``."""

    def put(self, item: StoredTask | None) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> StoredTask | None: ...


class Slot:
    """One worker's current task, deadline and fate."""

    def __init__(self, deliver: Deliver, timed: Callable[[float], None] | None = None) -> None:
        self._deliver = deliver
        self._timed = timed  # told how long each delivered attempt took, in seconds
        self._lock = threading.Lock()
        self.task: StoredTask | None = None
        self.began = 0.0  # time.monotonic() when the current task was handed to the worker
        self.deadline: float | None = None
        self.retired = False
        self.tasks_done = 0
        self.thread: threading.Thread | None = None  # the supervisor-side thread of this slot
        self.mailbox: Mailbox = queue.SimpleQueue()  # see SlotPool
        self.handle: Any = None  # the pool's own worker object (e.g. a child process)

    def begin(self, task: StoredTask, timeout: float | None) -> None:
        with self._lock:
            self.task = task
            self.began = now = time.monotonic()
            self.deadline = now + timeout if timeout else None

    def arm(self, timeout: float | None) -> None:
        """Start the current task's clock now (after a worker's own start-up)."""
        with self._lock:
            if self.task is not None:
                self.deadline = time.monotonic() + timeout if timeout else None

    def finish(self, outcome: Outcome) -> bool:
        """Deliver ``outcome`` unless the attempt was already ended; True when delivered."""
        with self._lock:
            if self.task is None or self.task.id != outcome.task_id:
                return False
            self.task = None
            self.deadline = None
            self.tasks_done += 1
            took = time.monotonic() - self.began
        self._deliver(outcome)
        if self._timed is not None:
            self._timed(took)
        return True

    def overdue(self, now: float, grace: float) -> StoredTask | None:
        """Retire the slot when its task is ``grace`` seconds past the deadline; return the task."""
        with self._lock:
            if self.task is None or self.deadline is None or now < self.deadline + grace:
                return None
            task, self.task, self.deadline = self.task, None, None
            self.retired = True
            return task

    def take(self, task_id: str) -> StoredTask | None:
        """End the attempt of ``task_id`` here (a cancellation), if this slot still runs it."""
        with self._lock:
            if self.task is None or self.task.id != task_id:
                return None
            task, self.task, self.deadline = self.task, None, None
            return task

    def take_attempt(self, task_id: str, attempt_token: str) -> StoredTask | None:
        """End this very attempt here (its lease is lost), if this slot still runs it."""
        with self._lock:
            task = self.task
            if task is None or task.id != task_id or task.attempt_token != attempt_token:
                return None
            self.task, self.deadline = None, None
            return task

    def abandon(self) -> StoredTask | None:
        """The worker died: retire the slot and return the task it held, if any."""
        with self._lock:
            task, self.task, self.deadline = self.task, None, None
            self.retired = True
            return task


class DeadlineMonitor:
    """A thread that ends overdue attempts: calls ``on_overdue(slot, task)`` for each one."""

    def __init__(
        self,
        name: str,
        slots: Callable[[], list[Slot]],
        grace: float,
        on_overdue: Callable[[Slot, StoredTask], None],
        interval: float,
    ) -> None:
        self._slots = slots
        self._grace = grace
        self._on_overdue = on_overdue
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"tandem-{name}-deadlines", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def tighten(self, interval: float) -> None:
        """Check at least every ``interval`` seconds from now on (a task with a short timeout)."""
        self._interval = min(self._interval, interval)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            for slot in self._slots():
                task = slot.overdue(now, self._grace)
                if task is not None:
                    self._on_overdue(slot, task)

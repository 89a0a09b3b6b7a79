"""The one interface every execution pool implements: thread, subinterpreter and process pools.

A pool runs claimed tasks with ``tandem.execution.execute`` and hands each ``Outcome`` to the
``deliver`` callback. It never writes task state and never raises out of a worker because of a
task: an exception that escapes the runner becomes a failed outcome, and the worker is replaced.
"""

from __future__ import annotations

import abc
import collections
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from tandem.brokers.base import StoredTask
from tandem.conf import AUTO_PREFETCH_PER_WORKER, PREFETCH_WINDOW, PoolConfig
from tandem.execution import Outcome, is_coroutine_task
from tandem.worker.pools.lanes import Arrived, AsyncLanes, Ended, Lane, ThreadLane
from tandem.worker.pools.slots import DeadlineMonitor, Mailbox, Slot
from tandem.worker.pools.startup import StartupFailure

Deliver = Callable[[Outcome], None]
STOP = None


class ExecutionPool(abc.ABC):
    kind: ClassVar[str]

    def __init__(self, config: PoolConfig, deliver: Deliver) -> None:
        self.config = config
        self.deliver = deliver
        self.restarts = 0
        #: Why this pool's workers cannot start now (None: they can); shown as unhealthy.
        self.failing: str | None = None
        #: Why this pool cannot go on in this process (None: it can); the supervisor then stops
        #: and exits non-zero, for a process supervisor (``--supervise``, systemd) to restart it.
        self.broken: str | None = None
        #: Called (from a pool thread) when one more worker became ready at start-up, so the
        #: supervisor claims a task for it at once (``ready_workers()``).
        self.on_ready: Callable[[], None] | None = None

    @property
    def size(self) -> int:
        return self.config.workers

    def ready_workers(self) -> int:
        """How many workers can take a task now: the supervisor claims for no more (beyond what
        ``prefetch()`` adds). All of them, except while a pool's workers still start up
        (subinterpreters setting Django up); each that becomes ready calls ``on_ready``."""
        return self.size

    def prove(self, modules: Sequence[str]) -> StartupFailure | None:
        """Before ``start()``: start one worker that sets Django up and imports ``modules``;
        why it could not, or None (the worker is kept for the pool). Threads share this
        process's Django and need no proof."""
        return None

    def describe(self) -> dict[str, object]:
        """What the worker registry shows of this pool beyond its configuration."""
        return {"failing": self.failing}

    @abc.abstractmethod
    def start(self) -> None:
        """Start the workers."""

    @abc.abstractmethod
    def submit(self, task: StoredTask) -> None:
        """Run ``task`` on the next free worker; tasks beyond ``size`` wait in the pool's inbox
        (at most ``prefetch()`` of them: the supervisor claims no more)."""

    def prefetch(self) -> int:
        """How many tasks beyond ``size`` the supervisor may claim for this pool now."""
        return self.config.prefetch or 0

    def async_room(self) -> int:
        """How many tasks the pool's event loops hold or may take now, beyond ``size``."""
        return 0

    @property
    def runs_coroutines(self) -> bool:
        """Whether ``async def`` tasks run here now (``cancel()`` can cancel them)."""
        return False

    #: Whether ``cancel()`` can stop a running task (only a process can be killed safely).
    can_kill: ClassVar[bool] = False

    def cancel(self, task_id: str) -> bool:
        """Stop the running task ``task_id`` by force, recording it cancelled; True if stopped."""
        return False

    @abc.abstractmethod
    def stop_attempt(self, task_id: str, attempt_token: str) -> bool:
        """End this attempt now and deliver no outcome: its lease is lost (another worker may
        run the task). Process: the child is killed; subinterpreter: the task is interrupted
        and the interpreter retired; thread: the thread is abandoned and its result discarded.
        True when the attempt was running or waiting here."""

    @abc.abstractmethod
    def stop(self, timeout: float | None) -> bool:
        """Stop taking work; wait up to ``timeout`` (None: forever) for running tasks to end.

        Returns True when every worker ended in time.
        """


class SlotPool(ExecutionPool):
    """What the three pools share: one supervisor-process thread per slot, fed from one inbox,
    and a deadline monitor when the pool has a ``timeout``.

    The inbox hands a task to the worker that became idle *last* (a stack of idle workers, each
    waiting on its own mailbox), and only queues it when every worker is busy: under light load
    one warm worker takes the tasks one after another, instead of each going to the worker idle
    the longest, whose caches (and, in a subinterpreter, whole interpreter) have gone cold.

    Subclasses write ``_work(slot)`` (the thread's loop, returning on ``STOP``) and
    ``_on_overdue(slot, task)`` (what a timeout does to that kind of worker).
    """

    #: seconds past the deadline before the monitor acts (0: at the deadline)
    overdue_grace: ClassVar[float] = 0.0

    def __init__(self, config: PoolConfig, deliver: Deliver) -> None:
        super().__init__(config, deliver)
        self._backlog: collections.deque[StoredTask | None] = collections.deque()
        self._idle: list[Mailbox] = []  # idle workers' mailboxes
        self._dispatch = threading.Lock()
        self._slots: list[Slot] = []
        self._lock = threading.Lock()
        self._counter = 0
        self._stopping = False
        self._monitor: DeadlineMonitor | None = None
        self._pace: float | None = None  # moving average of recent attempts' seconds
        self._lanes: AsyncLanes | None = None  # event loops for ``async def`` tasks (first use)

    def _new_lane(self, name: str, arrived: Arrived, ended: Ended) -> Lane:
        """One worker's event loop, of this pool's kind (here: a thread of this process)."""
        return ThreadLane(name, self.config.async_concurrency, arrived, ended)

    def _coroutines(self) -> AsyncLanes:
        with self._lock:
            if self._lanes is None:
                self._lanes = AsyncLanes(
                    self.size,
                    self.config.async_concurrency,
                    self.deliver,
                    lambda number, arrived, ended: self._new_lane(
                        f"tandem-{self.config.name}-{self.kind}-loop-{number}", arrived, ended
                    ),
                )
            return self._lanes

    def async_room(self) -> int:
        lanes = self._lanes
        return 0 if lanes is None else lanes.room()

    @property
    def runs_coroutines(self) -> bool:
        lanes = self._lanes
        return lanes is not None and lanes.in_flight() > 0

    def cancel(self, task_id: str) -> bool:
        """Cancel a running coroutine (sync tasks: only the process pool can stop them)."""
        lanes = self._lanes
        return lanes is not None and lanes.cancel(task_id)

    def _timed(self, seconds: float) -> None:
        pace = self._pace
        self._pace = seconds if pace is None else pace + (seconds - pace) * 0.2

    def prefetch(self) -> int:
        """Automatic (``prefetch`` None): enough claimed-ahead tasks to keep the workers busy
        for ``PREFETCH_WINDOW`` at their recent pace — many for tiny tasks, none for long ones,
        so a host never sits on work another host could start. Before any task has finished, and
        while tasks take longer than the window, nothing is claimed ahead."""
        if self.config.prefetch is not None:
            return self.config.prefetch
        pace = self._pace
        if pace is None or pace >= PREFETCH_WINDOW:
            return 0
        per_worker = min(AUTO_PREFETCH_PER_WORKER, int(PREFETCH_WINDOW / max(pace, 1e-6)))
        return per_worker * self.ready_workers()

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()
        if self.config.timeout:
            self._watch_deadlines(self.config.timeout)

    def _watch_deadlines(self, timeout: float) -> None:
        """Start the deadline monitor (once), checking often enough for ``timeout``."""
        interval = min(0.25, timeout / 4)
        with self._lock:
            if self._monitor is None:
                self._monitor = DeadlineMonitor(
                    self.config.name,
                    self._live_slots,
                    self.overdue_grace,
                    self._on_overdue,
                    interval=interval,
                )
                self._monitor.start()
            else:
                self._monitor.tighten(interval)

    def timeout_for(self, task: StoredTask) -> float | None:
        """The task's own ``timeout`` when it has one, else the pool's."""
        return task.timeout if task.timeout is not None else self.config.timeout

    def _live_slots(self) -> list[Slot]:
        with self._lock:
            return list(self._slots)

    def _spawn(self) -> None:
        slot = Slot(self.deliver, self._timed)
        with self._lock:
            if self._stopping:
                return  # a replacement racing stop(): stop() would never tell it to end
            self._counter += 1
            name = f"tandem-{self.config.name}-{self.kind}-{self._counter}"
            # Daemon threads: a task that never returns must not keep the process from exiting.
            # Started under the lock, before it is listed: stop() never joins a thread that has
            # not started (that raises), e.g. a replacement spawned while the pool stops.
            slot.thread = threading.Thread(target=self._work, args=(slot,), name=name, daemon=True)
            slot.thread.start()
            self._slots.append(slot)

    def _replace(self, slot: Slot) -> None:
        """Retire ``slot`` for good and give its seat to a fresh worker."""
        with self._dispatch:  # (a worker that ended while idle: no task may be put there)
            if slot.mailbox in self._idle:
                self._idle.remove(slot.mailbox)
        with self._lock:
            if slot in self._slots:
                self._slots.remove(slot)
            self.restarts += 1
        self._spawn()

    def submit(self, task: StoredTask) -> None:
        if is_coroutine_task(task):  # on an event loop, beside the sync slots
            self._coroutines().submit(task, self.timeout_for(task))
            return
        if task.timeout is not None:
            self._watch_deadlines(task.timeout)
        self._put(task)

    def _put(self, item: StoredTask | None) -> None:
        with self._dispatch:
            if self._idle:
                self._idle.pop().put(item)  # the most recently idle worker
                return
            self._backlog.append(item)

    def _take_waiting(self, task_id: str, attempt_token: str | None = None) -> StoredTask | None:
        """Remove ``task_id`` from the backlog, if it waits there (claimed ahead, not started)."""
        with self._dispatch:
            for item in self._backlog:
                if item is not None and item.id == task_id:
                    if attempt_token is not None and item.attempt_token != attempt_token:
                        continue
                    self._backlog.remove(item)
                    return item
        return None

    def stop_attempt(self, task_id: str, attempt_token: str) -> bool:
        lanes = self._lanes
        if lanes is not None and lanes.stop_attempt(task_id, attempt_token):
            return True
        for slot in self._live_slots():
            task = slot.take_attempt(task_id, attempt_token)
            if task is not None:
                self._stop_running(slot, task)
                return True
        return self._take_waiting(task_id, attempt_token) is not None

    def _stop_running(self, slot: Slot, task: StoredTask) -> None:
        """End ``slot``'s attempt of ``task`` (already taken from the slot: no outcome is
        delivered). By default the worker is retired and replaced: it runs on until the task
        returns, and its result is discarded."""
        slot.retired = True
        self._replace(slot)

    def _next(self, slot: Slot) -> StoredTask | None:
        """The next task for ``slot``'s worker (``STOP``: end), waiting while there is none."""
        with self._dispatch:
            if self._backlog:
                return self._backlog.popleft()
            self._idle.append(slot.mailbox)
        return slot.mailbox.get()

    @abc.abstractmethod
    def _work(self, slot: Slot) -> None: ...

    @abc.abstractmethod
    def _on_overdue(self, slot: Slot, task: StoredTask) -> None: ...

    def stop(self, timeout: float | None) -> bool:
        if self._monitor is not None:
            self._monitor.stop()
        with self._lock:
            self._stopping = True
            slots = list(self._slots)
        with self._dispatch:
            # Claimed-ahead tasks not started yet: a drain stops only once there are none, and
            # a forced stop has released them to READY already — never start one now.
            self._backlog.clear()
        for _ in slots:
            self._put(STOP)
        # (a seat given to a fresh worker a moment ago may not have started its thread yet:
        # it takes its STOP when it does)
        threads = [s.thread for s in slots if s.thread is not None and s.thread.ident is not None]
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        clean = not any(t.is_alive() for t in threads)
        lanes = self._lanes
        if lanes is not None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            clean = lanes.stop(left) and clean
        return clean

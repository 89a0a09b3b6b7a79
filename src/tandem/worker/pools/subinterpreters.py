"""The subinterpreter pool (Python >= 3.14): each worker is an interpreter with its own GIL.

Tasks run in parallel on all cores, with module state isolated per worker; Django is set up once
per interpreter. Interpreters are started on demand: the pool starts with the one that proved it,
starts another when a task finds every one busy (up to ``workers``), and closes one that idled
for the pool's ``idle_close`` seconds (default 3) while another is idle too: an idle pool holds
one ready interpreter (each costs about 30 MiB with Django set up; ``idle_keep`` 0: none, and
a task arriving at an idle pool waits for one to set up). With ``idle_close`` None, every
worker's interpreter starts with the pool and stays.

A worker is an interpreter entered once by a thread of its own, which runs ``runner.serve``: it
gets its task through an ``interpreters`` queue and a pipe byte, and sends the outcome back the
same way (about 50 µs a round trip, where an ``Interpreter.call()`` per task cost 0.5 to 0.9 ms).
The thread that submits a task sends it to an idle worker (``inbox``); the slot's thread sends
the backlog's, the next one ahead while one runs (``interpreter``), and reads every outcome.

Timeouts: the interpreter's interrupter thread raises ``TaskTimeout`` in the task at the deadline
(pure-Python code is interrupted; a blocking C call is not). An interpreter that still has not
returned ``overdue_grace`` seconds later is retired — never given work again — and replaced.

Limits (see docs/explanation/pools.md): C extensions without subinterpreter support do not
import. The supervisor proves before the pool starts that one interpreter sets Django up and
imports the pool's task modules (``startup.choose``: else the pool runs on processes), and a task
whose attempt fails on a refused import runs again, in the same attempt, on a process pool of this
pool's own (``_run_elsewhere``). No signals, fork or daemon threads inside; ``os._exit`` or a
segfault ends the whole process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace

from tandem.brokers.base import StoredTask
from tandem.conf import PoolConfig
from tandem.worker.pools import runner, warmup
from tandem.worker.pools.base import STOP, Deliver, ExecutionPool, SlotPool
from tandem.worker.pools.inbox import Inbox
from tandem.worker.pools.interpreter import SKIPPED, WorkerInterpreter
from tandem.worker.pools.lanes import Arrived, Ended, InterpreterLane, Lane
from tandem.worker.pools.slots import Slot, crash_outcome, timeout_outcome
from tandem.worker.pools.startup import StartupFailure, refused_module

logger = logging.getLogger("tandem.worker")

#: Retired interpreters still running (stuck in a task) per worker of the pool, at most: past
#: that, the pool is broken and the process must be restarted (a running interpreter cannot be
#: closed, only abandoned).
RETIRED_PER_WORKER = 2
#: How long a subinterpreter pool's start waits for its first worker (seconds): the one that
#: proved the pool, already set up, so at once; the others start on demand (``_grow``).
STARTUP_WAIT = 60.0


def available() -> bool:
    return sys.version_info >= (3, 14)


def release_memory() -> None:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``) after an
    interpreter closed: ``malloc`` keeps most of its 30 MiB otherwise, and RSS stays up."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)


_Interpreter = WorkerInterpreter  # (its name here before it had a module of its own)


class SubinterpreterPool(SlotPool):
    kind = "subinterpreter"
    overdue_grace = 2.0  # after the watchdog's TaskTimeout, before the interpreter is retired

    def __init__(self, config: PoolConfig, deliver: Deliver) -> None:
        super().__init__(config, deliver)
        self._environment = runner.worker_environment()
        self._spare: _Interpreter | None = None  # the interpreter that proved the pool
        self._fallback: ExecutionPool | None = None
        self._refusing: set[str] = set()  # task paths that import a module refused here
        self.fallback_tasks = 0
        self._starting = 0  # workers started whose interpreter is not set up yet
        self._growing = threading.Lock()
        self._first_ready = threading.Event()
        self._retired: list[_Interpreter] = []

    @property
    def retired_running(self) -> int:
        """Retired interpreters still running their task."""
        self._retired = [w for w in self._retired if w.thread.is_alive()]
        return len(self._retired)

    def _retire(self, slot: Slot) -> None:
        """Count ``slot``'s interpreter as retired; break the pool past the cap. A task sent
        ahead to it that has not started goes to another worker."""
        worker = slot.handle
        if isinstance(worker, _Interpreter):
            self._retired.append(worker)
            self._reclaim(worker)
        cap = RETIRED_PER_WORKER * self.size
        if self.retired_running > cap and self.broken is None:
            self.broken = (
                f"pool {self.config.name}: {self.retired_running} retired interpreters are still "
                f"running their tasks (at most {cap}); a running interpreter cannot be closed, "
                "so this process must be restarted"
            )
            logger.critical("%s", self.broken)

    def start(self) -> None:
        """Start the first worker (the one that proved the pool, when there is one) and return
        once it is ready: the supervisor's first round then claims for it. The others start on
        demand (``_grow``): an idle pool holds one interpreter, not ``workers`` of them. With
        ``idle_close`` None every worker starts now (the others set Django up meanwhile)."""
        for _ in range(1 if self.config.idle_close is not None else self.size):
            self._spawn()
        if self.config.timeout:
            self._watch_deadlines(self.config.timeout)
        self._first_ready.wait(STARTUP_WAIT)

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._starting += 1
        super()._spawn()

    def _ready_count(self) -> int:
        """Live workers whose interpreter is set up (or failed to); under ``_lock``."""
        return sum(1 for slot in self._slots if slot.handle is not None and not slot.retired)

    def ready_workers(self) -> int:
        """Workers that can take a task now: those set up and those starting, plus one more
        while the pool has fewer than ``workers`` — the one a task waiting here would start
        (``_grow``). The supervisor claims for no more: a task waits here only while a worker
        starts for it (or until a busy one is free), and several start side by side, not one
        after another. With ``idle_close`` None, those set up: never a task that would queue
        behind a busy one."""
        with self._lock:
            if self.config.idle_close is None:
                return min(self._ready_count(), self.size)
            return min(self._ready_count() + self._starting + 1, self.size)

    def _put(self, item: StoredTask | None) -> None:
        super()._put(item)
        if item is not STOP:
            self._grow()

    def _grow(self) -> None:
        """Start one more worker per task that waits here with no worker starting for it (up to
        ``workers``): every live worker is busy."""
        with self._lock:
            if len(self._slots) >= self.size:
                return  # every worker started (the usual case): no backlog to count
        with self._growing:  # one at a time: the workers counted are the workers started
            with self._dispatch:
                waiting = sum(1 for item in self._backlog if item is not STOP)
                with self._lock:
                    room = self.size - len(self._slots)
                    wanted = min(room, waiting - self._starting)
            for _ in range(max(0, wanted)):
                self._spawn()

    def _became_ready(self) -> None:
        with self._lock:
            self._starting -= 1
        self._first_ready.set()
        on_ready = self.on_ready
        if on_ready is not None:
            on_ready()

    def _next(self, slot: Slot) -> StoredTask | None:
        """As ``SlotPool._next``, and a task sent ahead to a busy worker comes here instead
        (``_steal_ahead``); a worker idle for ``idle_close`` seconds ends (``STOP``) while more
        than ``idle_keep`` are idle: the pool shrinks to one ready interpreter (by default); with
        ``idle_keep`` 0 to none, and the next task waits for one to set up (``_grow``)."""
        with self._dispatch:
            if self._backlog:
                return self._backlog.popleft()
            if (task := self._steal_ahead(slot)) is not None:
                return task
            self._idle.append(slot.mailbox)
        idle_close = self.config.idle_close
        if idle_close is None:
            return slot.mailbox.get()
        while True:
            try:
                return slot.mailbox.get(timeout=idle_close)
            except queue.Empty:
                pass
            with self._dispatch:
                if slot.mailbox not in self._idle:
                    continue  # handed a task (or STOP) an instant ago: take it
                with self._lock:
                    keep = self.config.idle_keep  # this one is idle too: it counts
                    if self._stopping or slot not in self._slots or len(self._idle) <= keep:
                        continue
                    self._idle.remove(slot.mailbox)
                    self._slots.remove(slot)  # not a restart: the seat is free again
            logger.debug("pool %s: closing an idle worker interpreter", self.config.name)
            return STOP

    def _steal_ahead(self, slot: Slot) -> StoredTask | None:
        """Under the dispatch lock, for ``slot``'s idle worker: a task sent ahead to another
        worker, not started there, taken back to run here (never stuck behind a long one)."""
        for other in self._live_slots():
            worker = other.handle
            if other is slot or not isinstance(worker, _Interpreter) or worker.ahead is None:
                continue
            task, taken = worker.take_back()
            if taken:
                return task
            worker.ahead = task  # it started there already: its ending is delivered there
        return None

    def prove(self, modules: Sequence[str]) -> StartupFailure | None:
        """Set the first worker up and import ``modules`` in it: the interpreter the command
        started ahead (``warmup``) when there is one, else a new one."""
        worker = warmup.take(self._environment)
        if worker is None:
            worker = _Interpreter(self._environment, "", modules)
        else:
            logger.debug(
                "pool %s: its first worker is the interpreter set up ahead", self.config.name
            )
            worker.import_modules(modules)
        if worker.setup_error is not None:
            worker.close()
            return worker.setup_error
        self._spare = worker
        return None

    def _new_lane(self, name: str, arrived: Arrived, ended: Ended) -> Lane:
        concurrency = self.config.async_concurrency
        return InterpreterLane(name, concurrency, arrived, ended, environment=self._environment)

    def describe(self) -> dict[str, object]:
        fallback = self._fallback
        return {
            **super().describe(),
            "fallback": fallback.config.executor if fallback else None,
            "fallback_tasks": self.fallback_tasks,
        }

    def submit(self, task: StoredTask) -> None:
        if task.task_path in self._refusing:
            self._run_elsewhere(task)
            return
        super().submit(task)

    def _run_elsewhere(self, task: StoredTask) -> None:
        """Run ``task`` on this pool's process executor: its code needs a module that cannot load
        in a subinterpreter (started on first use, with this pool's settings)."""
        with self._lock:
            if self._fallback is None:
                from tandem.worker.pools.processes import ProcessPool

                self._fallback = ProcessPool(replace(self.config, executor="process"), self.deliver)
                self._fallback.start()
            fallback = self._fallback
            self.fallback_tasks += 1
        fallback.submit(task)

    def _refused(self, task: StoredTask, error: str) -> None:
        """Hand ``task`` to the fallback: ``error`` says an import was refused here (the first
        time for a task path, a notice says so)."""
        module = refused_module(error)
        if task.task_path not in self._refusing:
            self._refusing.add(task.task_path)
            logger.warning(
                "pool %s: task %s needs the module %r, which cannot load in a subinterpreter; "
                "its attempts run on the process executor of this pool from now on. Set "
                '"executor": "process" for this pool to silence this notice.',
                self.config.name,
                task.task_path,
                module,
            )
        self._run_elsewhere(task)

    def _interpreter(self) -> _Interpreter:
        with self._lock:
            worker, self._spare = self._spare, None
        if worker is None:
            worker = _Interpreter(self._environment, "", lowered=True)
        worker.start(f"{threading.current_thread().name}-run")
        failure = worker.setup_error
        if failure is not None:
            if not refused_module(f"{failure.error}\n{failure.details}"):
                self.failing = failure.describe()  # (a refused import: the fallback runs them)
            logger.error(
                "a worker interpreter of pool %s could not set up Django: %s",
                self.config.name,
                failure.error,
            )
        return worker

    def _work(self, slot: Slot) -> None:
        try:
            worker = self._interpreter()
            slot.handle = worker
        finally:
            self._became_ready()
        inbox = Inbox(lambda t: self._start(slot, worker, t) is None, worker.done_r, worker.done_w)
        slot.mailbox = inbox  # (not idle before this: nothing was put in the one it replaces)
        task: StoredTask | None = None  # a task sent ahead that started when the last one ended
        try:
            while True:
                signal = None
                if task is None:
                    if (task := self._next(slot)) is STOP:
                        break
                    signal = inbox.ended()
                    if signal is None and (failure := self._start(slot, worker, task)) is not None:
                        text = f"{failure.error}\n{failure.details}"
                        if refused_module(text) and slot.take(task.id) is not None:
                            self._refused(task, text)
                        else:
                            slot.finish(crash_outcome(task, failure.describe()))
                        task = None
                        continue
                if signal is None:
                    self._send_ahead(slot, worker)  # runs there as soon as this one ends
                    signal = os.read(worker.done_r, 1)
                if not self._ended(slot, worker, task, signal):
                    return  # the interpreter's loop ended: a fresh one took the seat
                task = self._started_ahead(slot, worker)
                if task is None and slot.retired:
                    return  # overran its deadline; a replacement already took its seat
            if inbox.lost:  # the interpreter's loop ended while idle: a fresh one takes the seat
                self._replace(slot)
        finally:
            worker.close()
            with self._lock:
                gone = slot not in self._slots and not self._stopping
            if gone:  # closed while the pool goes on (idle, crashed, retired)
                release_memory()

    def _ended(self, slot: Slot, worker: _Interpreter, task: StoredTask, signal: bytes) -> bool:
        """Deliver how ``task`` ended (``signal``: the byte its interpreter wrote); False when
        the interpreter's loop ended instead (the task is recorded as crashed, the worker
        replaced, and a task sent ahead goes to another worker)."""
        outcome = worker.outcome(signal)
        if outcome is None:
            # Something escaped the runner itself: record the failure, fresh interpreter.
            slot.finish(crash_outcome(task, worker.crash or "the worker interpreter ended"))
            with self._dispatch:
                ahead, taken = worker.take_back()
            self._replace(slot)
            if ahead is not None and taken:
                self._put(ahead)
            elif ahead is not None:  # it started there, and the loop ended in it
                slot.begin(ahead, self.timeout_for(ahead))
                slot.finish(crash_outcome(ahead, worker.crash or "the worker interpreter ended"))
            return False
        error = outcome.error.traceback if outcome.error else ""
        if refused_module(error) and slot.take(task.id) is not None:
            self._refused(task, error)
        else:
            slot.finish(outcome)
        return True

    def _send_ahead(self, slot: Slot, worker: _Interpreter) -> None:
        """Send the next waiting task to ``worker`` while it runs one: it starts there as that
        one ends, without waiting for this thread (and the main GIL). One at a time."""
        if worker.ahead_pending or slot.retired or worker.setup_error is not None:
            return
        with self._dispatch:
            if self._stopping or not self._backlog or self._backlog[0] is STOP:
                return
            task = self._backlog.popleft()
            assert task is not None
            worker.claim_ahead(task)
        worker.send(task, self.timeout_for(task), ahead=True)

    def _started_ahead(self, slot: Slot, worker: _Interpreter) -> StoredTask | None:
        """The task sent ahead, which runs now that the last one ended (the slot's current
        task from now on); None when none was sent, or when the pool took it back or stopped
        it: its ending (``SKIPPED``, or a stopped attempt's outcome) is read here and dropped."""
        if not worker.ahead_pending:
            return None
        with self._dispatch:
            task, worker.ahead = worker.ahead, None
            if task is not None:
                worker.ahead_pending = False
                slot.begin(task, self.timeout_for(task))  # (never out of sight of stop_attempt)
                return task
        worker.ahead_pending = False
        signal = os.read(worker.done_r, 1)  # SKIPPED, or the ending of one that was stopped
        if signal == b".":
            worker.outcome(signal)  # (its attempt was stopped: the outcome is not delivered)
        elif signal != SKIPPED and not slot.retired:  # (retired: replaced already)
            slot.retired = True  # the loop ended: replaced like a worker that crashed
            self._replace(slot)
        return None

    def _reclaim(self, worker: _Interpreter, *, again: bool = True) -> None:
        """Take back the task sent ahead to ``worker`` if it has not started there: it goes to
        another worker (``again``) or nowhere (the pool stops: its lease was released)."""
        with self._dispatch:
            task, taken = worker.take_back()
            if task is not None and not taken:
                worker.ahead = task  # it runs there already: its ending is delivered
        if task is not None and taken and again:
            with self._lock:
                again = not self._stopping
            if again:
                self._put(task)

    def stop_attempt(self, task_id: str, attempt_token: str) -> bool:
        """As ``SlotPool.stop_attempt``, and a task sent ahead to a worker counts: taken back
        if it has not started there (it never does), else stopped as a running one. Looked for
        under the dispatch lock, which every move from the backlog to ahead to running holds."""
        lanes = self._lanes
        if lanes is not None and lanes.stop_attempt(task_id, attempt_token):
            return True
        running: tuple[Slot, StoredTask] | None = None
        with self._dispatch:
            for slot in self._live_slots():
                worker, task = slot.handle, slot.take_attempt(task_id, attempt_token)
                if task is None and isinstance(worker, _Interpreter):
                    ahead = worker.ahead
                    if ahead is not None and (ahead.id, ahead.attempt_token) == (
                        task_id,
                        attempt_token,
                    ):
                        task, taken = worker.take_back()
                        if taken:
                            return True
                if task is not None:
                    running = (slot, task)
                    break
            else:
                for item in self._backlog:
                    if item is not None and (item.id, item.attempt_token) == (
                        task_id,
                        attempt_token,
                    ):
                        self._backlog.remove(item)
                        return True
                return False
        self._stop_running(*running)
        return True

    def _start(self, slot: Slot, worker: _Interpreter, task: StoredTask) -> StartupFailure | None:
        """Begin ``task`` in ``slot``, send it to ``worker``; or why Django is not set up there."""
        timeout = self.timeout_for(task)
        slot.begin(task, timeout)
        if worker.setup_error is None:
            worker.send(task, timeout)
        return worker.setup_error

    def stop(self, timeout: float | None) -> bool:
        with self._lock:
            spare, self._spare = self._spare, None
            fallback = self._fallback
            slots = list(self._slots)
            self._stopping = True  # (from here on no task is sent ahead: ``_send_ahead``)
        if spare is not None:
            spare.close()
        for slot in slots:
            if isinstance(slot.handle, _Interpreter):
                self._reclaim(slot.handle, again=False)  # never started now (see ``SlotPool``)
        clean = super().stop(timeout)
        for worker in [slot.handle for slot in slots] + self._retired:
            if isinstance(worker, _Interpreter) and worker.thread.is_alive():
                worker.abandon()  # still in a task past the stop: never joined
        if fallback is not None:
            clean = fallback.stop(timeout) and clean
        return clean

    def _stop_running(self, slot: Slot, task: StoredTask) -> None:
        """Interrupt the task (``LeaseLost``), then retire the interpreter: a fresh one takes
        its seat at once, and this one closes when the task returns (its result discarded)."""
        worker = slot.handle
        if isinstance(worker, _Interpreter):
            worker.interrupt(task)
        self._retire(slot)
        super()._stop_running(slot, task)

    def _on_overdue(self, slot: Slot, task: StoredTask) -> None:
        timeout = self.timeout_for(task)
        assert timeout is not None
        self.deliver(
            timeout_outcome(
                task,
                timeout,
                f"its interpreter did not return {self.overdue_grace:g}s after the watchdog's "
                "TaskTimeout (a blocking C call?); the interpreter was retired and replaced.",
            )
        )
        logger.warning(
            "pool %s: retired an interpreter stuck in task %s", self.config.name, task.id
        )
        self._retire(slot)
        self._replace(slot)

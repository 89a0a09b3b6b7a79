"""The subinterpreter pool (Python >= 3.14): each worker is an interpreter with its own GIL.

Tasks run in parallel on all cores, with module state isolated per worker; Django is set up once
per interpreter. Interpreters are started on demand: the pool starts with the one that proved it,
starts another when a task finds every one busy (up to ``workers``), and closes one that idled
for the pool's ``idle_close`` seconds (default 3) while another is idle too: an idle pool holds
one ready interpreter (each costs about 30 MiB with Django set up; ``idle_keep`` 0: none, and
a task arriving at an idle pool waits for one to set up). With ``idle_close`` None, every
worker's interpreter starts with the pool and stays.

A worker is an interpreter entered once by a thread of its own, which runs ``runner.serve``: it
gets one task at a time through an ``interpreters`` queue and a pipe byte, and sends the outcome
back the same way (about 50 µs a round trip, where an ``Interpreter.call()`` per task cost 0.5 to
0.9 ms). The thread that submits a task sends it to an idle worker (``inbox``); the slot's thread
sends those from the pool's backlog, and reads every outcome back.

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
from typing import Any

from tandem.brokers.base import StoredTask
from tandem.conf import PoolConfig
from tandem.execution import Outcome
from tandem.worker.pools import handoff, runner, warmup
from tandem.worker.pools.base import STOP, Deliver, ExecutionPool, SlotPool
from tandem.worker.pools.inbox import Inbox
from tandem.worker.pools.lanes import Arrived, Ended, InterpreterLane, Lane
from tandem.worker.pools.slots import Slot, crash_outcome, lower_priority, timeout_outcome
from tandem.worker.pools.startup import StartupFailure, from_exception, refused_module

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


class _Interpreter:
    """One worker interpreter and the thread that runs ``runner.serve`` in it."""

    def __init__(
        self,
        environment: tuple[Any, ...],
        name: str,
        modules: Sequence[str] = (),
        *,
        lowered: bool = False,
        interp: Any = None,
        setup_error: StartupFailure | None = None,
    ) -> None:
        """Create the interpreter and set Django up in it. ``lowered``: on a thread of the idle
        class, like the tasks (``lower_priority``): a pool's workers that set up while the
        first ones already run tasks must not take the CPU from those tasks — nor from the web
        side — for the second or more each takes; only the proof, before anything runs, does
        not wait for spare CPU. ``interp``: one created and set up already (``warmup``), with
        ``setup_error`` saying how its set-up went."""
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

        self.interp = interp if interp is not None else interpreters.create()
        self.tasks = interpreters.create_queue()
        self.results = interpreters.create_queue()
        self.stops = interpreters.create_queue()  # attempts to interrupt (their lease is lost)
        self.wake_r, self.wake_w = os.pipe()
        self.done_r, self.done_w = os.pipe()
        self.stop_r, self.stop_w = os.pipe()
        self.crash: str | None = None  # why the loop ended while a task ran
        self.setup_error: StartupFailure | None = setup_error
        if interp is None and lowered:
            setup = threading.Thread(
                target=self._set_up,
                args=(environment, modules, True),
                name=f"{threading.current_thread().name}-setup",
            )
            setup.start()
            setup.join()
        elif interp is None:
            self._set_up(environment, modules)
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def _set_up(
        self, environment: tuple[Any, ...], modules: Sequence[str], lowered: bool = False
    ) -> None:
        if lowered:
            lower_priority()
        try:
            self.interp.call(runner.setup, *environment)
        except Exception as exc:
            self.setup_error = from_exception("subinterpreter", "setting Django up", exc)
            return
        self.import_modules(modules)

    def import_modules(self, modules: Sequence[str]) -> None:
        """Import the pool's task ``modules`` here (Django set up); ``setup_error`` says which
        one could not."""
        if self.setup_error is not None:
            return
        for module in modules:
            try:
                self.interp.call(runner.import_module, module)
            except Exception as exc:
                stage = f"importing task module {module!r}"
                self.setup_error = from_exception("subinterpreter", stage, exc)
                return

    def start(self, name: str) -> None:
        """Start serving tasks (only once Django is set up here)."""
        self.thread.name = name
        if self.setup_error is None:
            self.thread.start()

    def _serve(self) -> None:
        lower_priority()  # this OS thread runs the interpreter: tasks yield to requests
        try:
            self.crash = self.interp.call(
                runner.serve,
                self.tasks,
                self.results,
                self.wake_r,
                self.done_w,
                self.stops,
                self.stop_r,
                self.stop_w,
            )
        except Exception as exc:  # ExecutionFailed: the loop itself failed
            self.crash = f"the worker interpreter failed: {exc}"
        finally:
            with contextlib.suppress(OSError):
                os.write(self.done_w, b"!")  # wakes its slot's thread: no outcome will come

    def send(self, task: StoredTask, timeout: float | None) -> None:
        """Start ``task`` there; a byte on ``done_r`` tells when it ended (``outcome``)."""
        self.tasks.put((handoff.encode(task), timeout))
        os.write(self.wake_w, b".")

    def outcome(self, signal: bytes) -> Outcome | None:
        """The outcome of the task sent, after ``signal``; None: the interpreter's loop ended."""
        if signal != b".":
            return None
        outcome: Outcome = handoff.decode(self.results.get_nowait())
        return outcome

    def interrupt(self, task: StoredTask) -> None:
        """Raise ``LeaseLost`` in ``task``'s attempt if it still runs here (pure Python only)."""
        self.stops.put(f"{task.id}:{task.attempt_token}")
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"!")

    def abandon(self) -> None:
        """Give up on this interpreter, still running a task: end its interrupter thread, which
        interpreter finalization would otherwise wait for forever (it joins every thread that
        is not a daemon, and a subinterpreter has no daemon threads)."""
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"q")

    def close(self) -> None:
        if self.thread.is_alive():
            self.tasks.put(None)
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b".")
            self.thread.join()
        try:
            self.interp.close()
        except Exception:  # already gone
            logger.debug("interpreter %s left open", getattr(self.interp, "id", "?"))
        for fd in (self.wake_r, self.wake_w, self.done_r, self.done_w, self.stop_r, self.stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


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
        """Count ``slot``'s interpreter as retired; break the pool past the cap."""
        worker = slot.handle
        if isinstance(worker, _Interpreter):
            self._retired.append(worker)
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
        """As ``SlotPool._next``, but a worker idle for ``idle_close`` seconds ends (``STOP``)
        while more than ``idle_keep`` workers are idle: the pool shrinks back to one interpreter
        (by default), which stays ready, so the pickup of a task by an idle pool never waits for
        an interpreter. With ``idle_keep`` 0 the last one closes too: an idle pool holds no
        interpreter, and the next task waits for one to set up (``_grow``)."""
        idle_close = self.config.idle_close
        if idle_close is None:
            return super()._next(slot)
        with self._dispatch:
            if self._backlog:
                return self._backlog.popleft()
            self._idle.append(slot.mailbox)
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
        try:
            while (task := self._next(slot)) is not STOP:
                signal = inbox.ended()
                if signal is None and (failure := self._start(slot, worker, task)) is not None:
                    text = f"{failure.error}\n{failure.details}"
                    if refused_module(text) and slot.take(task.id) is not None:
                        self._refused(task, text)
                    else:
                        slot.finish(crash_outcome(task, failure.describe()))
                    continue
                outcome = worker.outcome(os.read(worker.done_r, 1) if signal is None else signal)
                if outcome is None:
                    # Something escaped the runner itself: record the failure, fresh interpreter.
                    slot.finish(crash_outcome(task, worker.crash or "the worker interpreter ended"))
                    self._replace(slot)
                    return
                error = outcome.error.traceback if outcome.error else ""
                if refused_module(error) and slot.take(task.id) is not None:
                    self._refused(task, error)
                else:
                    slot.finish(outcome)
                if slot.retired:
                    return  # overran its deadline; a replacement already took its seat
            if inbox.lost:  # the interpreter's loop ended while idle: a fresh one takes the seat
                self._replace(slot)
        finally:
            worker.close()
            with self._lock:
                gone = slot not in self._slots and not self._stopping
            if gone:  # closed while the pool goes on (idle, crashed, retired)
                release_memory()

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
        if spare is not None:
            spare.close()
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

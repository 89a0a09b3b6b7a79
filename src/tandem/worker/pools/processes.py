"""The process pool: each worker is a child process (started with ``spawn``).

Full isolation: a segfault, ``os._exit`` or a leak stays in the child. Timeouts are hard: at the
deadline the child is killed and replaced. ``max_tasks_per_worker`` recycles a child after that
many tasks (for leaky task code). ``spawn`` (never ``fork``): forking a process that hosts
subinterpreters kills the child, and a fresh interpreter has no inherited locks or connections.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from typing import Any

from tandem.brokers.base import StoredTask
from tandem.conf import PoolConfig
from tandem.worker.pools import runner
from tandem.worker.pools.base import STOP, Deliver, SlotPool
from tandem.worker.pools.lanes import Arrived, Ended, Lane, ProcessLane
from tandem.worker.pools.runner import worker_environment
from tandem.worker.pools.slots import Slot, cancelled_outcome, crash_outcome, timeout_outcome
from tandem.worker.pools.startup import StartupFailure, from_exception

logger = logging.getLogger("tandem.worker")

#: How long a fresh child may take to start (spawn + ``django.setup()``) before it is killed.
STARTUP_TIMEOUT = 60.0
#: How often a start-up in progress checks whether it was cancelled.
STARTUP_POLL = 0.1


class StartupFailed(RuntimeError):
    """A fresh child did not get ready within ``STARTUP_TIMEOUT``."""


class StartupAbandoned(Exception):
    """The task a child was starting for was taken away (cancelled, lease lost, pool stopping)."""


class ChildFailed(RuntimeError):
    """A worker process could not start: ``failure`` says at which stage and why."""

    def __init__(self, failure: StartupFailure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


class _Child:
    def __init__(self, environment: tuple[Any, ...], modules: Sequence[str] = ()) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=runner.process_main,
            args=(child_end, *environment, tuple(modules)),
            daemon=True,
        )
        self.process.start()
        child_end.close()
        self.tasks = 0

    def handshake(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Wait until the child is ready; ``ChildFailed`` when it could not start. Kill it when
        ``cancelled()`` (``StartupAbandoned``) or after ``STARTUP_TIMEOUT`` (``StartupFailed``)."""
        timeout = STARTUP_TIMEOUT
        deadline = time.monotonic() + timeout
        while not self.connection.poll(STARTUP_POLL):
            if cancelled():
                self.kill()
                raise StartupAbandoned("the task was taken away while its worker process started")
            if not self.process.is_alive():
                raise EOFError("the worker process exited during start-up")
            if time.monotonic() > deadline:
                self.kill()
                raise StartupFailed(f"the worker process did not start within {timeout:g}s")
        message = self.connection.recv()
        if isinstance(message, tuple) and message[0] == "failed":
            _, stage, error, details = message
            raise ChildFailed(
                StartupFailure(executor="process", stage=stage, error=error, details=details)
            )
        if not (isinstance(message, tuple) and message[0] == "ready"):
            raise RuntimeError(f"unexpected first message from worker process: {message!r}")

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.send(None)
        self.process.join(5)
        self.kill()
        self.process.join()
        self.connection.close()


def _reap(child: _Child | None) -> int | None:
    """Make sure a dead or dying child is gone; its exit code (negative: killed by a signal)."""
    if child is None:
        return None
    child.process.join(2)
    child.kill()
    child.process.join()
    return child.process.exitcode


class ProcessPool(SlotPool):
    kind = "process"

    def __init__(self, config: PoolConfig, deliver: Deliver) -> None:
        super().__init__(config, deliver)
        self._environment = worker_environment()
        self.recycled = 0
        self._spare: _Child | None = None  # the child that proved the pool: the first worker's
        self._stopping = False

    def prove(self, modules: Sequence[str]) -> StartupFailure | None:
        try:
            child = _Child(self._environment, modules)
        except Exception as exc:  # e.g. spawn cannot start a child here
            return from_exception("process", "starting a process", exc)
        try:
            child.handshake(lambda: self._stopping)
        except ChildFailed as exc:
            _reap(child)
            return exc.failure
        except (EOFError, OSError, RuntimeError, StartupAbandoned) as exc:
            exitcode = _reap(child)
            return from_exception("process", f"starting (exit code {exitcode})", exc)
        self._spare = child
        return None

    def _new_child(self, slot: Slot, task: StoredTask) -> _Child:
        with self._lock:
            child, self._spare = self._spare, None
        if child is not None:
            slot.handle = child
            return child
        child = _Child(self._environment)
        slot.handle = child  # a cancel or a lost lease during start-up kills it
        try:
            child.handshake(lambda: self._stopping or slot.task is not task)
        except ChildFailed as exc:
            _reap(child)
            self.failing = exc.failure.describe()
            raise
        except BaseException:
            _reap(child)
            raise
        self.failing = None
        return child

    def _work(self, slot: Slot) -> None:
        child: _Child | None = None
        try:
            while (task := self._next(slot)) is not STOP:
                slot.begin(task, None)
                try:
                    if child is None:
                        # Start-up (spawn + django.setup()) is not part of the task's time; it
                        # has a deadline of its own (STARTUP_TIMEOUT) and ends if the task is
                        # taken away meanwhile.
                        child = self._new_child(slot, task)
                    slot.arm(self.timeout_for(task))
                    if slot.task is not task:
                        continue  # cancelled while the child started: never run it
                    child.connection.send((task, None))
                    reply = child.connection.recv()
                except ChildFailed as exc:
                    slot.finish(crash_outcome(task, f"the worker process could not start: {exc}"))
                    child = None
                    self.restarts += 1
                    continue
                except StartupAbandoned:
                    child = None
                    continue  # its ending (cancelled, lease lost) was decided elsewhere
                except StartupFailed as exc:
                    slot.finish(crash_outcome(task, f"{exc}; it was killed and is replaced."))
                    child = None
                    self.restarts += 1
                    continue
                except (EOFError, OSError, RuntimeError) as exc:
                    exitcode = _reap(child)
                    slot.finish(
                        crash_outcome(
                            task,
                            f"the worker process died (exit code {exitcode}) while running the "
                            f"task ({type(exc).__name__}); a fresh process replaces it.",
                        )
                    )
                    child = None
                    slot.retired = False
                    self.restarts += 1
                    continue
                if isinstance(reply, tuple) and reply[0] == "crashed":
                    # An exception escaped the runner in the child: record it, replace the child.
                    slot.finish(reply[1])
                    _reap(child)
                    child = None
                    self.restarts += 1
                    continue
                slot.finish(reply)
                child.tasks += 1
                limit = self.config.max_tasks_per_worker
                if limit and child.tasks >= limit:
                    child.close()
                    child = None
                    self.recycled += 1
        finally:
            if child is not None:
                child.close()

    def stop(self, timeout: float | None) -> bool:
        self._stopping = True  # a child still starting is abandoned
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
        return super().stop(timeout)

    can_kill = True

    def _new_lane(self, name: str, arrived: Arrived, ended: Ended) -> Lane:
        concurrency = self.config.async_concurrency
        return ProcessLane(name, concurrency, arrived, ended, environment=self._environment)

    def cancel(self, task_id: str) -> bool:
        if super().cancel(task_id):  # a coroutine
            return True
        for slot in self._live_slots():
            task = slot.take(task_id)
            if task is None:
                continue
            self.deliver(cancelled_outcome(task, "its worker process was killed and replaced."))
            child = slot.handle
            if isinstance(child, _Child):
                child.kill()  # the worker thread sees the pipe close and starts a fresh child
            return True
        waiting = self._take_waiting(task_id)
        if waiting is not None:  # claimed ahead, not started: it never runs
            self.deliver(cancelled_outcome(waiting, "it had not started yet."))
            return True
        return False

    def _stop_running(self, slot: Slot, task: StoredTask) -> None:
        child = slot.handle
        if isinstance(child, _Child):
            child.kill()  # the worker thread sees the pipe close and starts a fresh child

    def _on_overdue(self, slot: Slot, task: StoredTask) -> None:
        timeout = self.timeout_for(task)
        assert timeout is not None
        self.deliver(timeout_outcome(task, timeout, "its worker process was killed and replaced."))
        child = slot.handle
        if isinstance(child, _Child):
            child.kill()  # the worker thread sees the pipe close and starts a fresh child

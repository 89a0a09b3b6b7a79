"""The subinterpreter pool (Python >= 3.14): each worker is an interpreter with its own GIL.

Tasks run in parallel on all cores, with module state isolated per worker; Django is set up once
per interpreter. A worker is one OS thread of the supervisor's process that hands tasks to its
interpreter with ``Interpreter.call()`` (no queue polling on the hot path).

Timeouts: a watchdog inside the interpreter raises ``TaskTimeout`` in the task at the deadline
(pure-Python code is interrupted; a blocking C call is not). An interpreter that still has not
returned ``RETIRE_GRACE`` seconds later is retired — never given work again — and replaced.

Limits (see docs/explanation/pools.md): C extensions without subinterpreter support do not import
(the task fails with an error naming the module; use ``"executor": "process"`` for that pool); no
signals, fork or daemon threads inside; ``os._exit`` or a segfault ends the whole process.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from typing import Any

from django.db import connections

from tandem.brokers.base import StoredTask
from tandem.conf import PoolConfig
from tandem.execution import failed
from tandem.worker.pools import runner
from tandem.worker.pools.base import Deliver, ExecutionPool
from tandem.worker.pools.slots import DeadlineMonitor, Slot, crash_outcome, timeout_outcome

logger = logging.getLogger("tandem.worker")

_STOP = None


def available() -> bool:
    return sys.version_info >= (3, 14)


def worker_environment() -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """What a fresh worker needs to set Django up like this process: path, env, live DB names."""
    environ = {"DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "")}
    databases = {alias: connections[alias].settings_dict["NAME"] for alias in connections}
    return list(sys.path), environ, databases


class SubinterpreterPool(ExecutionPool):
    kind = "subinterpreter"
    RETIRE_GRACE = 2.0

    def __init__(self, config: PoolConfig, deliver: Deliver) -> None:
        super().__init__(config, deliver)
        self._inbox: queue.SimpleQueue[StoredTask | None] = queue.SimpleQueue()
        self._slots: list[Slot] = []
        self._lock = threading.Lock()
        self._environment = worker_environment()
        self._monitor: DeadlineMonitor | None = None
        self.ready = threading.Semaphore(0)  # released once per worker whose Django is set up

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()
        if self.config.timeout:
            self._monitor = DeadlineMonitor(
                self.config.name,
                lambda: list(self._slots),
                self.RETIRE_GRACE,
                self._on_overdue,
                interval=min(0.25, self.config.timeout / 4),
            )
            self._monitor.start()

    def _spawn(self) -> None:
        slot = Slot(self.deliver)
        thread = threading.Thread(
            target=self._work,
            args=(slot,),
            name=f"tandem-{self.config.name}-interp",
            daemon=True,  # a busy interpreter must never keep the process from exiting
        )
        slot.handle = thread
        with self._lock:
            self._slots.append(slot)
        thread.start()

    def submit(self, task: StoredTask) -> None:
        self._inbox.put(task)

    def _work(self, slot: Slot) -> None:
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

        interp = interpreters.create()
        setup_error: BaseException | None = None
        try:
            interp.call(runner.setup, *self._environment)
        except Exception as exc:
            setup_error = exc
            logger.error(
                "a worker interpreter of pool %s could not set up Django: %s", self.config.name, exc
            )
        self.ready.release()
        try:
            while (task := self._inbox.get()) is not _STOP:
                slot.begin(task, self.config.timeout)
                if setup_error is not None:
                    slot.finish(failed(task, setup_error))
                    continue
                try:
                    outcome = interp.call(runner.run, task, self.config.timeout)
                except interpreters.ExecutionFailed as exc:
                    # Something escaped the runner itself: record the failure, fresh interpreter.
                    slot.finish(crash_outcome(task, f"the worker interpreter failed: {exc}"))
                    self._replace(slot)
                    return
                slot.finish(outcome)
                if slot.retired:
                    return  # overran its deadline; a replacement already took its seat
        finally:
            try:
                interp.close()
            except Exception:  # still running (retired mid-call) or already gone
                logger.debug("interpreter %s left open", getattr(interp, "id", "?"))

    def _replace(self, slot: Slot) -> None:
        with self._lock:
            if slot in self._slots:
                self._slots.remove(slot)
            self.restarts += 1
        self._spawn()

    def _on_overdue(self, slot: Slot, task: StoredTask) -> None:
        assert self.config.timeout is not None
        self.deliver(
            timeout_outcome(
                task,
                self.config.timeout,
                f"its interpreter did not return {self.RETIRE_GRACE:g}s after the watchdog's "
                "TaskTimeout (a blocking C call?); the interpreter was retired and replaced.",
            )
        )
        logger.warning(
            "pool %s: retired an interpreter stuck in task %s", self.config.name, task.id
        )
        self._replace(slot)

    def stop(self, timeout: float | None) -> bool:
        if self._monitor is not None:
            self._monitor.stop()
        with self._lock:
            slots = list(self._slots)
        for _ in slots:
            self._inbox.put(_STOP)
        return _join([s.handle for s in slots if not s.retired], timeout)


def _join(threads: list[threading.Thread], timeout: float | None) -> bool:
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in threads:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        thread.join(remaining)
    return not any(t.is_alive() for t in threads)

"""The thread pool: works everywhere, best for I/O-bound tasks.

Threads share one GIL (no CPU parallelism) and cannot be stopped from outside. A timeout here is
therefore honest but soft: at the deadline the attempt ends FAILED (or is retried) with a
``TaskTimeout`` error, its slot is given to a fresh thread, and the old thread — still running the
task until the task itself returns — has its eventual result discarded. Worker threads are daemon
threads, so a forced shutdown never waits for a task that does not return.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from django.db import close_old_connections, connections

from tandem.brokers.base import StoredTask
from tandem.conf import PoolConfig
from tandem.execution import execute, failed
from tandem.worker.pools.base import Deliver, ExecutionPool
from tandem.worker.pools.slots import DeadlineMonitor, Slot, timeout_outcome

logger = logging.getLogger("tandem.worker")

_STOP = None


class ThreadPool(ExecutionPool):
    kind = "thread"

    def __init__(self, config: PoolConfig, deliver: Deliver) -> None:
        super().__init__(config, deliver)
        self._inbox: queue.SimpleQueue[StoredTask | None] = queue.SimpleQueue()
        self._slots: list[Slot] = []
        self._lock = threading.Lock()
        self._counter = 0
        self._monitor: DeadlineMonitor | None = None

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()
        if self.config.timeout:
            self._monitor = DeadlineMonitor(
                self.config.name,
                lambda: list(self._slots),
                0.0,
                self._on_overdue,
                interval=min(0.25, self.config.timeout / 4),
            )
            self._monitor.start()

    def _spawn(self) -> None:
        slot = Slot(self.deliver)
        with self._lock:
            self._counter += 1
            self._slots.append(slot)
            name = f"tandem-{self.config.name}-{self._counter}"
        thread = threading.Thread(target=self._work, args=(slot,), name=name, daemon=True)
        slot.handle = thread
        thread.start()

    def _retire(self, slot: Slot) -> None:
        with self._lock:
            if slot in self._slots:
                self._slots.remove(slot)
            self.restarts += 1
        self._spawn()

    def submit(self, task: StoredTask) -> None:
        self._inbox.put(task)

    def _work(self, slot: Slot) -> None:
        try:
            while (task := self._inbox.get()) is not _STOP:
                slot.begin(task, self.config.timeout)
                close_old_connections()
                try:
                    outcome = execute(task)
                except BaseException as exc:  # a signal receiver or the runner itself failed
                    logger.exception("runner failed for task %s; replacing worker", task.id)
                    slot.finish(failed(task, exc))
                    self._retire(slot)
                    return
                finally:
                    close_old_connections()
                slot.finish(outcome)
                if slot.retired:
                    return  # overran its deadline; a fresh thread already took the seat
        finally:
            connections.close_all()

    def _on_overdue(self, slot: Slot, task: StoredTask) -> None:
        assert self.config.timeout is not None
        self.deliver(
            timeout_outcome(
                task,
                self.config.timeout,
                "threads cannot be interrupted, so the task may still be running in its old "
                "thread; its result will be discarded and a fresh thread took its place.",
            )
        )
        self._retire(slot)

    def stop(self, timeout: float | None) -> bool:
        if self._monitor is not None:
            self._monitor.stop()
        with self._lock:
            slots = list(self._slots)
        for _ in slots:
            self._inbox.put(_STOP)
        deadline = None if timeout is None else time.monotonic() + timeout
        for slot in slots:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            slot.handle.join(remaining)
        return not any(s.handle.is_alive() for s in slots)

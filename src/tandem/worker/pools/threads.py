"""The thread pool: works everywhere, best for I/O-bound tasks.

Threads share one GIL (no CPU parallelism) and cannot be interrupted: a timeout in this pool is
cooperative only. Worker threads are daemon threads, so a forced shutdown never waits for a task
that does not return.
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

logger = logging.getLogger("tandem.worker")

_STOP = None


class ThreadPool(ExecutionPool):
    kind = "thread"

    def __init__(self, config: PoolConfig, deliver: Deliver) -> None:
        super().__init__(config, deliver)
        self._inbox: queue.SimpleQueue[StoredTask | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._counter = 0

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        self._counter += 1
        thread = threading.Thread(
            target=self._work, name=f"tandem-{self.config.name}-{self._counter}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def submit(self, task: StoredTask) -> None:
        self._inbox.put(task)

    def _work(self) -> None:
        try:
            while (task := self._inbox.get()) is not _STOP:
                close_old_connections()
                try:
                    outcome = execute(task)
                except BaseException as exc:  # a signal receiver or the runner itself failed
                    logger.exception("runner failed for task %s; replacing worker", task.id)
                    self.deliver(failed(task, exc))
                    self.restarts += 1
                    self._threads.remove(threading.current_thread())
                    self._spawn()
                    return
                finally:
                    close_old_connections()
                self.deliver(outcome)
        finally:
            connections.close_all()

    def stop(self, timeout: float | None) -> bool:
        for _ in self._threads:
            self._inbox.put(_STOP)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in self._threads)

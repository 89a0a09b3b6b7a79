"""The thread pool: works everywhere, best for I/O-bound tasks.

Threads share one GIL (no CPU parallelism) and cannot be stopped from outside. A timeout here is
therefore honest but soft: at the deadline the attempt ends FAILED (or is retried) with a
``TaskTimeout`` error, its slot is given to a fresh thread, and the old thread — still running the
task until the task itself returns — has its eventual result discarded. Worker threads are daemon
threads, so a forced shutdown never waits for a task that does not return.
"""

from __future__ import annotations

import functools
import logging

from django.db import close_old_connections, connections

from tandem.brokers.base import StoredTask
from tandem.execution import execute, failed
from tandem.worker.pools.base import STOP, SlotPool
from tandem.worker.pools.slots import Slot, timeout_outcome

logger = logging.getLogger("tandem.worker")


def _still_runs(slot: Slot, task: StoredTask) -> bool:
    return slot.task is task


class ThreadPool(SlotPool):
    kind = "thread"

    def _work(self, slot: Slot) -> None:
        try:
            while (task := self._next(slot)) is not STOP:
                slot.begin(task, self.timeout_for(task))
                close_old_connections()
                try:
                    # Abandoned (timeout, lost lease): its late ending sends no task_finished.
                    outcome = execute(task, current=functools.partial(_still_runs, slot, task))
                except BaseException as exc:  # a signal receiver or the runner itself failed
                    logger.exception("runner failed for task %s; replacing worker", task.id)
                    slot.finish(failed(task, exc))
                    self._replace(slot)
                    return
                finally:
                    close_old_connections()
                slot.finish(outcome)
                if slot.retired:
                    return  # overran its deadline; a fresh thread already took the seat
        finally:
            connections.close_all()

    def _on_overdue(self, slot: Slot, task: StoredTask) -> None:
        timeout = self.timeout_for(task)
        assert timeout is not None
        self.deliver(
            timeout_outcome(
                task,
                timeout,
                "threads cannot be interrupted, so the task may still be running in its old "
                "thread; its result will be discarded and a fresh thread took its place.",
            )
        )
        self._replace(slot)

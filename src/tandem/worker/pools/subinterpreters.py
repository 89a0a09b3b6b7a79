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
import sys
from typing import Any

from django.db import connections

from tandem.brokers.base import StoredTask
from tandem.conf import PoolConfig
from tandem.execution import failed
from tandem.worker.pools import runner
from tandem.worker.pools.base import STOP, Deliver, SlotPool
from tandem.worker.pools.slots import Slot, crash_outcome, lower_priority, timeout_outcome

logger = logging.getLogger("tandem.worker")


def available() -> bool:
    return sys.version_info >= (3, 14)


def worker_environment() -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """What a fresh worker needs to set Django up like this process: path, env, live DB names."""
    environ = {"DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "")}
    databases = {alias: connections[alias].settings_dict["NAME"] for alias in connections}
    return list(sys.path), environ, databases


class SubinterpreterPool(SlotPool):
    kind = "subinterpreter"
    overdue_grace = 2.0  # after the watchdog's TaskTimeout, before the interpreter is retired

    def __init__(self, config: PoolConfig, deliver: Deliver) -> None:
        super().__init__(config, deliver)
        self._environment = worker_environment()

    def _work(self, slot: Slot) -> None:
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

        lower_priority()  # this OS thread runs the interpreter: tasks yield to requests
        interp = interpreters.create()
        setup_error: BaseException | None = None
        try:
            interp.call(runner.setup, *self._environment)
        except Exception as exc:
            setup_error = exc
            logger.error(
                "a worker interpreter of pool %s could not set up Django: %s", self.config.name, exc
            )
        try:
            while (task := self._inbox.get()) is not STOP:
                slot.begin(task, self.timeout_for(task))
                if setup_error is not None:
                    slot.finish(failed(task, setup_error))
                    continue
                try:
                    outcome = interp.call(runner.run, task, self.timeout_for(task))
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
        self._replace(slot)

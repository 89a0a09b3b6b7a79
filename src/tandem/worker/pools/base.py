"""The one interface every execution pool implements: thread, subinterpreter and process pools.

A pool runs claimed tasks with ``tandem.execution.execute`` and hands each ``Outcome`` to the
``deliver`` callback. It never writes task state and never raises out of a worker because of a
task: an exception that escapes the runner becomes a failed outcome, and the worker is replaced.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

from tandem.brokers.base import StoredTask
from tandem.conf import PoolConfig
from tandem.execution import Outcome

Deliver = Callable[[Outcome], None]


class ExecutionPool(abc.ABC):
    kind: ClassVar[str]

    def __init__(self, config: PoolConfig, deliver: Deliver) -> None:
        self.config = config
        self.deliver = deliver
        self.restarts = 0

    @property
    def size(self) -> int:
        return self.config.workers

    @abc.abstractmethod
    def start(self) -> None:
        """Start the workers."""

    @abc.abstractmethod
    def submit(self, task: StoredTask) -> None:
        """Run ``task`` on a free worker; the caller never submits more than ``size`` at once."""

    @abc.abstractmethod
    def stop(self, timeout: float | None) -> bool:
        """Stop taking work; wait up to ``timeout`` (None: forever) for running tasks to end.

        Returns True when every worker ended in time.
        """


def create_pool(config: PoolConfig, deliver: Deliver) -> ExecutionPool:
    from tandem.worker.pools.processes import ProcessPool
    from tandem.worker.pools.subinterpreters import SubinterpreterPool
    from tandem.worker.pools.threads import ThreadPool

    kinds: dict[str, type[ExecutionPool]] = {
        pool.kind: pool for pool in (ThreadPool, SubinterpreterPool, ProcessPool)
    }
    return kinds[config.executor](config, deliver)

"""Execution pools: one ``ExecutionPool`` interface (``base``), three kinds — threads,
subinterpreters (Python >= 3.14) and child processes — and the factory that picks the kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package stays light: worker interpreters and children import runner
    from tandem.conf import PoolConfig
    from tandem.worker.pools.base import Deliver, ExecutionPool


def create_pool(config: PoolConfig, deliver: Deliver) -> ExecutionPool:
    from tandem.worker.pools.processes import ProcessPool
    from tandem.worker.pools.subinterpreters import SubinterpreterPool
    from tandem.worker.pools.threads import ThreadPool

    kinds: dict[str, type[ExecutionPool]] = {
        pool.kind: pool for pool in (ThreadPool, SubinterpreterPool, ProcessPool)
    }
    return kinds[config.executor](config, deliver)


__all__ = ["create_pool"]

"""The supervisor's view of one pool (``PoolState``) and which pools a supervisor runs
(``select_pools``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import ImproperlyConfigured

from tandem.brokers.base import StoredTask
from tandem.conf import BackendOptions, PoolConfig
from tandem.worker.pools.base import ExecutionPool
from tandem.worker.pools.startup import StartupFailure


@dataclass(slots=True)
class PoolState:
    """One pool as the supervisor drives it: its attempts in flight, and when to claim for it
    next (a wake-up, a free slot, the next poll, the next starvation check)."""

    config: PoolConfig
    pool: ExecutionPool
    in_flight: dict[str, StoredTask] = field(default_factory=dict)
    next_poll: datetime | None = None
    dirty: bool = True
    exhausted: bool = False
    configured_executor: str = ""
    startup_error: StartupFailure | None = None  # why it does not run on configured_executor
    next_starvation_check: datetime | None = None
    woken: float = 0.0  # monotonic time of the last wake-up naming this pool's queues

    @property
    def free(self) -> int:
        """How many more tasks to claim: free workers (those ready: a starting pool's workers
        count as each becomes ready), plus what the pool buffers ahead."""
        pool = self.pool
        return pool.ready_workers() + pool.prefetch() + pool.async_room() - len(self.in_flight)


def select_pools(
    options: BackendOptions, queues: Sequence[str] | None, workers: int | None
) -> tuple[PoolConfig, ...]:
    """The pools a supervisor runs: all, or those serving ``queues`` (narrowed to them)."""
    from dataclasses import replace

    pools = []
    wanted = set(queues or ())
    for pool in options.pools:
        served = tuple(q for q in pool.queues if not wanted or q in wanted)
        if served:
            pools.append(replace(pool, queues=served, workers=workers if workers else pool.workers))
    missing = wanted - {q for p in pools for q in p.queues}
    if missing:
        raise ImproperlyConfigured(
            f"Queue(s) {', '.join(sorted(map(repr, missing)))} are served by no pool of "
            f"TASKS[{options.alias!r}]; known queues: "
            f"{', '.join(sorted(q for p in options.pools for q in p.queues))}."
        )
    return tuple(pools)


__all__ = ["PoolState", "select_pools"]

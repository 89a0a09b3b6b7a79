"""Rate limits in the memory twin: a start log per (backend, limit key), under the broker's lock.

Every claim runs under the broker's lock, so the log is exact: a task is admitted while fewer
than N starts of its limit key (its task path; the pool's queues for a pool rate) fall in the
window ending at the claim's ``now``, and its start is logged when it is claimed. The database
and Redis stores keep the same log in the store (``database_rates``, the claim scripts).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tandem import rates

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tandem.brokers.base import StoredTask


class RateBook:
    """The start log of every limit key: (backend, key) -> start times (epoch seconds)."""

    def __init__(self) -> None:
        self.starts: dict[tuple[str, str], list[float]] = {}
        #: (backend, key) -> when its next start fits (epoch seconds), for full windows.
        self.free_at: dict[tuple[str, str], float] = {}

    def gate(
        self, backend: str, queues: Sequence[str], pool_rate: str | None, now: datetime
    ) -> RateGate:
        return RateGate(self, backend, queues, pool_rate, now.timestamp())

    def full(self, backend: str, now: datetime) -> dict[str, datetime]:
        """The limit keys whose window is full at ``now``: key -> when the next start fits
        (``Broker.rate_limited``)."""
        return {
            key: datetime.fromtimestamp(at, UTC)
            for (b, key), at in self.free_at.items()
            if b == backend and at > now.timestamp()
        }


class RateGate:
    """One claim's view of the log: ``admits`` says whether a task fits its rates now,
    ``record`` logs its start."""

    def __init__(
        self,
        book: RateBook,
        backend: str,
        queues: Sequence[str],
        pool_rate: str | None,
        now: float,
    ) -> None:
        self.book, self.backend, self.now = book, backend, now
        self.pool = (rates.pool_key(queues), pool_rate) if pool_rate else None

    def _limits(self, task: StoredTask) -> list[tuple[str, str]]:
        limits = []
        if self.pool is not None:
            limits.append(self.pool)
        if task.rate_limit:
            limits.append((rates.task_key(task.task_path), task.rate_limit))
        return limits

    def admits(self, task: StoredTask) -> bool:
        ok = True
        for key, rate in self._limits(task):
            count, window = rates.parse_rate(rate)
            slot = (self.backend, key)
            log = rates.prune(self.book.starts.get(slot, []), window, self.now)
            self.book.starts[slot] = log
            if rates.allowance(log, count, window, self.now) <= 0:
                self.book.free_at[slot] = rates.free_at(log, count, window) or self.now
                ok = False
        return ok

    def record(self, task: StoredTask) -> None:
        for key, rate in self._limits(task):
            count, window = rates.parse_rate(rate)
            slot = (self.backend, key)
            log = self.book.starts.setdefault(slot, [])
            log.append(self.now)
            at = rates.free_at(rates.prune(log, window, self.now), count, window)
            if at is None:
                self.book.free_at.pop(slot, None)
            else:
                self.book.free_at[slot] = at


__all__ = ["RateBook", "RateGate"]

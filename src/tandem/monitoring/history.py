"""Throughput over time, for the dashboard: finished tasks per minute, and the failures among them.

The counts come from ``Broker.throughput`` and the failures from ``Broker.recent_failures``: the
database store answers both (its ``status, finished_at`` index serves the query); a store that
keeps no finish times it can count by answers None, and the dashboard shows the current counts
only. Retried attempts
are not in these numbers: a task is counted once, when it ends SUCCESSFUL or FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tandem.backends.base import TandemBackend
from tandem.brokers.base import FAILED, SUCCESSFUL, StoredTask


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    start: datetime
    succeeded: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None


def throughput(backend: TandemBackend, now: datetime, minutes: int = 60) -> list[Bucket] | None:
    """One bucket per minute for the last ``minutes`` (oldest first), or None when the store
    cannot say."""
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    counts = backend.broker.throughput(start)
    if counts is None:
        return None
    buckets = []
    for i in range(minutes):
        moment = start + timedelta(minutes=i)
        buckets.append(
            Bucket(
                start=moment,
                succeeded=counts.get((moment, SUCCESSFUL), 0),
                failed=counts.get((moment, FAILED), 0),
            )
        )
    return buckets


def recent_failures(backend: TandemBackend, limit: int = 20) -> list[StoredTask] | None:
    """The last ``limit`` FAILED tasks (newest first), or None when the store cannot say."""
    return backend.broker.recent_failures(limit)


__all__ = ["Bucket", "recent_failures", "throughput"]

"""Throughput over time, for the dashboard: finished tasks per minute, and the failures among them.

Only a database store keeps finished rows with their ``finished_at`` in a form that can be
counted by time (the ``status, finished_at`` index serves the query); for any other broker
``throughput()`` returns None and the dashboard shows the current counts only. Retried attempts
are not in these numbers: a task is counted once, when it ends SUCCESSFUL or FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count
from django.db.models.functions import TruncMinute

from tandem.backends.base import TandemBackend
from tandem.brokers.base import FAILED, SUCCESSFUL
from tandem.brokers.database import DatabaseBroker
from tandem.models import TaskRecord


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
    broker = backend.broker
    if not isinstance(broker, DatabaseBroker):
        return None
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    rows = (
        TaskRecord.objects.using(broker.database)
        .filter(backend=backend.alias, status__in=[SUCCESSFUL, FAILED], finished_at__gte=start)
        .annotate(minute=TruncMinute("finished_at"))
        .values("minute", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[datetime, dict[str, int]] = {}
    for row in rows:
        minute = row["minute"]
        if minute is None:
            continue
        counts.setdefault(minute, {})[row["status"]] = row["n"]
    buckets = []
    for i in range(minutes):
        moment = start + timedelta(minutes=i)
        found = counts.get(moment, {})
        buckets.append(
            Bucket(start=moment, succeeded=found.get(SUCCESSFUL, 0), failed=found.get(FAILED, 0))
        )
    return buckets


def recent_failures(backend: TandemBackend, limit: int = 20) -> list[TaskRecord] | None:
    """The last ``limit`` FAILED tasks (newest first), or None when the store cannot say."""
    broker = backend.broker
    if not isinstance(broker, DatabaseBroker):
        return None
    return list(
        TaskRecord.objects.using(broker.database)
        .filter(backend=backend.alias, status=FAILED)
        .order_by("-finished_at")
        .only("id", "task_path", "queue_name", "finished_at", "errors", "worker_ids")[:limit]
    )


__all__ = ["Bucket", "recent_failures", "throughput"]

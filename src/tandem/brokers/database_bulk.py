"""Selections and bulk retries on the database store (for ``tandem retry`` and ``tandem cancel``).

A retry is one guarded ``UPDATE`` per task (``WHERE status = 'FAILED'``), all of a call in one
transaction: the command calls it per batch, so workers are never held up for long.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from tandem.models import TaskRecord

if TYPE_CHECKING:
    from tandem.brokers.database_store import DatabaseStore


def find(
    broker: DatabaseStore,
    statuses: Sequence[str],
    *,
    ids: Sequence[str] | None = None,
    queue: str | None = None,
    task_path: str | None = None,
    finished_since: datetime | None = None,
    enqueued_since: datetime | None = None,
) -> list[str]:
    rows = TaskRecord.objects.using(broker.database).filter(
        backend=broker.backend_alias, status__in=list(statuses)
    )
    if ids is not None:
        keys = []
        for task_id in ids:
            try:
                keys.append(uuid.UUID(str(task_id)))
            except ValueError:
                continue
        rows = rows.filter(id__in=keys)
    if queue is not None:
        rows = rows.filter(queue_name=queue)
    if task_path is not None:
        rows = rows.filter(task_path=task_path)
    if finished_since is not None:
        rows = rows.filter(finished_at__gte=finished_since)
    if enqueued_since is not None:
        rows = rows.filter(enqueued_at__gte=enqueued_since)
    return [str(pk) for pk in rows.order_by("enqueued_at", "id").values_list("id", flat=True)]


def retry_failed(
    broker: DatabaseStore, max_attempts: Mapping[str, int], now: datetime
) -> list[str]:
    from tandem.brokers.database import TABLE, write_transaction

    moved = []
    with write_transaction(broker.connection), broker.connection.cursor() as cursor:
        for task_id, attempts in max_attempts.items():
            try:
                key = broker._id_param(task_id)
            except ValueError:
                continue
            cursor.execute(
                f"UPDATE {TABLE} SET status = 'READY', max_attempts = %s, available_at = %s, "
                "finished_at = NULL, worker_id = '', lease_expires_at = NULL, "
                "cancel_requested_at = NULL "
                "WHERE id = %s AND backend = %s AND status = 'FAILED'",
                [attempts, broker._dt_param(now), key, broker.backend_alias],
            )
            if cursor.rowcount:
                moved.append(task_id)
    if moved:
        broker.notify(sorted(set(_queues(broker, moved))))
    return moved


def _queues(broker: DatabaseStore, task_ids: Sequence[str]) -> list[str]:
    return list(
        TaskRecord.objects.using(broker.database)
        .filter(id__in=[uuid.UUID(t) for t in task_ids])
        .values_list("queue_name", flat=True)
        .distinct()
    )


__all__ = ["find", "retry_failed"]

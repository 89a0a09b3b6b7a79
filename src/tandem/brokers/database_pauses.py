"""Paused queues on the database store: one ``tandem_queuepause`` row per paused queue.

A claim reads this backend's paused queues (a tiny table, one indexed read) and leaves them out
of the queue list it claims from, so the claim statement and its index-ordered plan stay the
same. The read is in the claim's own transaction on SQLite (``BEGIN IMMEDIATE``) and, on
MariaDB, sees every pause committed before the claim began; on PostgreSQL the claim statement
reads them itself (``dialects.base.Pick.pause_table``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from tandem.models import QueuePause

if TYPE_CHECKING:
    from tandem.brokers.database_store import DatabaseStore

PAUSE_TABLE = QueuePause._meta.db_table


def unpaused(broker: DatabaseStore, queues: Sequence[str]) -> Sequence[str]:
    """``queues`` less those paused on ``broker``'s backend (``queues`` itself when none is)."""
    if not queues:
        return queues
    with broker.dialect.cursor(broker.connection) as cursor:
        cursor.execute(
            f"SELECT queue_name FROM {PAUSE_TABLE} WHERE backend = %s", [broker.backend_alias]
        )
        paused = {row[0] for row in cursor.fetchall()}
    if not paused:
        return queues
    return [queue for queue in queues if queue not in paused]


def pause(broker: DatabaseStore, queues: Sequence[str], now: datetime) -> list[str]:
    from tandem.brokers.database import write_transaction

    rows = QueuePause.objects.using(broker.database)
    with write_transaction(broker.connection):
        known = set(
            rows.filter(backend=broker.backend_alias, queue_name__in=queues).values_list(
                "queue_name", flat=True
            )
        )
        fresh = [q for q in dict.fromkeys(queues) if q not in known]
        rows.bulk_create(
            [QueuePause(backend=broker.backend_alias, queue_name=q, paused_at=now) for q in fresh],
            ignore_conflicts=True,  # a pause from another process in between: still paused
        )
    return fresh


def resume(broker: DatabaseStore, queues: Sequence[str]) -> list[str]:
    from tandem.brokers.database import write_transaction

    rows = QueuePause.objects.using(broker.database).filter(
        backend=broker.backend_alias, queue_name__in=queues
    )
    with write_transaction(broker.connection):
        paused = set(rows.values_list("queue_name", flat=True))
        rows.delete()
        resumed = [q for q in dict.fromkeys(queues) if q in paused]
        if resumed:
            broker.notify(resumed)  # PostgreSQL: listening supervisors claim at once
    return resumed


def paused_since(broker: DatabaseStore) -> dict[str, datetime]:
    rows = (
        QueuePause.objects.using(broker.database)
        .filter(backend=broker.backend_alias)
        .order_by("queue_name")
        .values_list("queue_name", "paused_at")
    )
    return dict(rows)


__all__ = ["PAUSE_TABLE", "pause", "paused_since", "resume", "unpaused"]

"""The database store's schedule ticks (one row per fired tick, unique per schedule and time,
so two schedulers never fire the same tick twice) and its worker registry (one row per worker,
its heartbeat and pools)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from tandem.brokers.base import NewTask, WorkerInfo
from tandem.brokers.database_store import DatabaseStore, write_transaction
from tandem.models import ScheduleTick, WorkerRecord

TICK_TABLE = ScheduleTick._meta.db_table


class DatabaseRegistry(DatabaseStore):
    """Mixed into ``DatabaseBroker``."""

    # -- schedule ticks ------------------------------------------------------------------------

    def fire_tick(self, name: str, tick_at: datetime, task: NewTask) -> str | None:
        with write_transaction(self.connection), self.connection.cursor() as cursor:
            cursor.execute(
                self.dialect.insert_ignore(
                    f"{TICK_TABLE} (backend, name, tick_at, task_id, created_at) "
                    "VALUES (%s, %s, %s, %s, %s)"
                ),
                [
                    self.backend_alias,
                    name,
                    self._dt_param(tick_at),
                    self._id_param(task.id),
                    self._dt_param(task.enqueued_at),
                ],
            )
            if cursor.rowcount != 1:
                return None
            [stored] = self.push([task])
            if stored != task.id:  # a unique task still active: the tick points at it
                cursor.execute(
                    f"UPDATE {TICK_TABLE} SET task_id = %s "
                    "WHERE backend = %s AND name = %s AND tick_at = %s",
                    [self._id_param(stored), self.backend_alias, name, self._dt_param(tick_at)],
                )
            return stored

    def prune_ticks(self, name: str, recorded_before: datetime) -> int:
        newest = self.last_tick(name)
        if newest is None:
            return 0
        with write_transaction(self.connection), self.connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {TICK_TABLE} WHERE backend = %s AND name = %s "
                "AND tick_at < %s AND tick_at < %s",
                [
                    self.backend_alias,
                    name,
                    self._dt_param(recorded_before),
                    self._dt_param(newest),
                ],
            )
            return int(max(cursor.rowcount, 0))

    def last_tick(self, name: str) -> datetime | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT MAX(tick_at) FROM {TICK_TABLE} WHERE backend = %s AND name = %s",
                [self.backend_alias, name],
            )
            row = cursor.fetchone()
        value = row[0] if row else None
        if isinstance(value, str):
            value = parse_datetime(value)
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    # -- worker registry -----------------------------------------------------------------------

    def register_worker(self, worker: WorkerInfo) -> None:
        with write_transaction(self.connection):
            WorkerRecord.objects.using(self.database).update_or_create(
                id=worker.id,
                defaults={
                    "backend": worker.backend,
                    "hostname": worker.hostname,
                    "pid": worker.pid,
                    "queues": list(worker.queues),
                    "pools": worker.pools,
                    "started_at": worker.started_at,
                    "last_heartbeat_at": worker.last_heartbeat_at,
                    "tasks_done": worker.tasks_done,
                },
            )

    def heartbeat_worker(
        self,
        worker_id: str,
        now: datetime,
        tasks_done: int,
        pools: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        changes: dict[str, Any] = {"last_heartbeat_at": now, "tasks_done": tasks_done}
        if pools is not None:
            changes["pools"] = pools
        with write_transaction(self.connection):
            WorkerRecord.objects.using(self.database).filter(id=worker_id).update(**changes)

    def unregister_worker(self, worker_id: str) -> None:
        with write_transaction(self.connection):
            WorkerRecord.objects.using(self.database).filter(id=worker_id).delete()

    def workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                id=w.id,
                backend=w.backend,
                hostname=w.hostname,
                pid=w.pid,
                queues=tuple(w.queues),
                pools=w.pools,
                started_at=w.started_at,
                last_heartbeat_at=w.last_heartbeat_at,
                tasks_done=w.tasks_done,
            )
            for w in WorkerRecord.objects.using(self.database)
            .filter(backend=self.backend_alias)
            .order_by("-last_heartbeat_at")
        ]

    def forget_workers(self, silent_since: datetime) -> int:
        with write_transaction(self.connection):
            deleted, _ = (
                WorkerRecord.objects.using(self.database)
                .filter(backend=self.backend_alias, last_heartbeat_at__lt=silent_since)
                .delete()
            )
        return deleted


__all__ = ["TICK_TABLE", "DatabaseRegistry"]

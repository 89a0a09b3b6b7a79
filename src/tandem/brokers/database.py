"""The database store: SQLite, PostgreSQL and MariaDB/MySQL through Django's connections.

Hot paths are single SQL statements. The broker is cut along its ideas, one module each:

- ``database_store``: the plumbing (connection, dialect, parameters), ``write_transaction``;
- ``dialects/``: what each store spells its own way, one class per store, picked once from the
  connection's vendor;
- ``database_claims`` (the claim), ``database_leases`` (renew, settle, release, recover),
  ``database_registry`` (schedule ticks, workers), ``database_workflow``, and the helpers
  ``database_{bulk,concurrency,pauses,rates,starvation}``;
- this module: the broker itself — push, reads, cancels, pruning, stats.

The broker uses the connection of the calling thread (Django's connections are per thread), so the
supervisor's writes never share a connection with task code.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMinute
from django.utils.dateparse import parse_datetime

from tandem.brokers import database_bulk, database_pauses, database_rates
from tandem.brokers.base import (
    FAILED,
    READY,
    SUCCESSFUL,
    Broker,
    NewTask,
    QueueStats,
    StoredTask,
    cancelled_error,
)
from tandem.brokers.database_claims import DatabaseClaims
from tandem.brokers.database_leases import DatabaseLeases
from tandem.brokers.database_registry import TICK_TABLE, DatabaseRegistry
from tandem.brokers.database_rows import INSERT_BATCH, INSERT_COLUMNS, NOTIFY_CHANNEL, TABLE
from tandem.brokers.database_store import round_transaction, write_transaction
from tandem.brokers.database_workflow import DatabaseWorkflows
from tandem.brokers.workflow import WAITING_UNTIL
from tandem.models import TaskRecord

if TYPE_CHECKING:
    from tandem.brokers.listeners import Listener

#: Rows per statement when pruning: short transactions, so workers are never held up for long.
PRUNE_BATCH = 1000


class DatabaseBroker(DatabaseClaims, DatabaseLeases, DatabaseRegistry, DatabaseWorkflows, Broker):
    rows_in_admin = True

    # -- plumbing ------------------------------------------------------------------------------

    def describe(self) -> str:
        connection = self.connection
        return f"{connection.vendor} ({connection.settings_dict.get('NAME')})"

    def setup_warnings(self) -> list[tuple[str, str]]:
        """SQLite without ``transaction_mode: "IMMEDIATE"`` (``dialects.sqlite``)."""
        return self.dialect.setup_warnings(self.backend_alias, self.database, self.connection)

    def listener(self, on_wake: Callable[[list[str]], None]) -> Listener | None:
        """PostgreSQL: LISTEN; a SQLite file: its commit watcher; MariaDB (and an in-memory
        SQLite, which no other process shares): none, the supervisor polls."""
        return self.dialect.listener(self, on_wake)

    def ping(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def due_ready(self, queues: Sequence[str], now: datetime) -> int:
        return (
            TaskRecord.objects.using(self.database)
            .filter(
                backend=self.backend_alias,
                status=READY,
                queue_name__in=list(queues),
                available_at__lte=now,
            )
            .count()
        )

    def throughput(self, since: datetime) -> dict[tuple[datetime, str], int] | None:
        # The (status, finished_at) index serves the query.
        rows = (
            TaskRecord.objects.using(self.database)
            .filter(
                backend=self.backend_alias,
                status__in=[SUCCESSFUL, FAILED],
                finished_at__gte=since,
            )
            .annotate(minute=TruncMinute("finished_at"))
            .values("minute", "status")
            .annotate(n=Count("id"))
            .order_by()
        )
        return {(r["minute"], r["status"]): r["n"] for r in rows if r["minute"] is not None}

    def recent_failures(self, limit: int) -> list[StoredTask] | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {self._select_columns()} FROM {TABLE} "
                "WHERE backend = %s AND status = 'FAILED' ORDER BY finished_at DESC, id LIMIT %s",
                [self.backend_alias, int(limit)],
            )
            return [self._row_to_task(row) for row in cursor.fetchall()]

    # -- the contract --------------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        connection = self.connection
        if self.worker_synchronous:
            self.dialect.worker_synchronous(connection, self.worker_synchronous)
        return round_transaction(self)

    def lost_to_deadlock(self, exc: BaseException) -> bool:
        return self.dialect.is_deadlock(exc)

    def startup_problem(self) -> str | None:
        """tandem's migrations not applied to the task database: the one-line fix."""
        unapplied = _unapplied_migrations(self.connection)
        if not unapplied:
            return None
        where = "" if self.database == "default" else f" --database {self.database}"
        return (
            f"tandem's tables are not migrated in database {self.database!r} (unapplied: "
            f"{', '.join(unapplied)}). Run `python manage.py migrate{where}` first."
        )

    def prepare(self) -> None:
        self.dialect.prepare(self.connection)

    def push(self, tasks: Sequence[NewTask]) -> list[str]:
        return self.push_and_notify(tasks, ())

    def push_and_notify(self, tasks: Sequence[NewTask], queues: Sequence[str]) -> list[str]:
        """``push()``, then ``notify(queues)`` — in ONE statement when that is all it takes.

        A handful of plain tasks (no unique key) is one ``INSERT`` — on PostgreSQL with the
        ``pg_notify`` in the same statement — so an autocommit ``enqueue()`` is one round trip and
        one commit, with no ``BEGIN``/``COMMIT`` around it. More rows, or unique tasks, take a
        write transaction.
        """
        plain = [t for t in tasks if t.unique_key is None]
        unique = [t for t in tasks if t.unique_key is not None]
        if not unique and len(plain) <= INSERT_BATCH:
            self._insert(plain, queues)
            return [t.id for t in tasks]
        known: dict[tuple[str, str], str] = {}  # (backend, key) -> the active task holding it
        with write_transaction(self.connection):
            for start in range(0, len(plain), INSERT_BATCH):
                self._insert(plain[start : start + INSERT_BATCH], ())
            if unique:
                known = self._push_unique(unique)
            self.notify(queues)
        return [t.id if t.unique_key is None else known[(t.backend, t.unique_key)] for t in tasks]

    def _record(self, t: NewTask) -> TaskRecord:
        return TaskRecord(
            id=uuid.UUID(t.id),
            backend=t.backend,
            queue_name=t.queue_name,
            task_path=t.task_path,
            priority=t.priority,
            takes_context=t.takes_context,
            status=READY,
            args=t.args,
            kwargs=t.kwargs,
            run_after=t.run_after,
            available_at=t.available_at,
            enqueued_at=t.enqueued_at,
            max_attempts=t.max_attempts,
            timeout=t.timeout,
            unique_key=t.unique_key,
            trace_context=t.trace_context,
            concurrency_key=t.concurrency_key,
            concurrency_limit=t.concurrency_limit,
            on_limit=t.on_limit,
            rate_limit=t.rate_limit,
        )

    def _push_unique(self, tasks: Sequence[NewTask]) -> dict[tuple[str, str], str]:
        """Insert unique tasks whose key no active task holds; map every key to its holder.

        ``INSERT … ON CONFLICT DO NOTHING`` (``INSERT IGNORE`` on MySQL) waits for a concurrent
        insert of the same key to commit instead of failing, and never poisons the caller's
        transaction. A holder that finished between the insert and the read frees its key: those
        tasks are inserted again.
        """
        first: dict[tuple[str, str], NewTask] = {}
        for t in tasks:  # within one batch, the first task with a key wins
            first.setdefault((t.backend, str(t.unique_key)), t)
        pending = list(first.values())
        known: dict[tuple[str, str], str] = {}
        records = TaskRecord.objects.using(self.database)
        for _ in range(10):
            records.bulk_create([self._record(t) for t in pending], ignore_conflicts=True)
            holders = records.filter(
                backend__in={t.backend for t in pending},
                unique_key__in=[t.unique_key for t in pending],
            ).values_list("backend", "unique_key", "id")
            for backend, key, holder in holders:
                known[(backend, str(key))] = str(uuid.UUID(str(holder)))
            pending = [t for t in pending if (t.backend, str(t.unique_key)) not in known]
            if not pending:
                return known
        raise RuntimeError(f"could not store unique tasks {[t.id for t in pending]}: keys churn")

    def get(self, task_id: str) -> StoredTask | None:
        try:
            key = self._id_param(str(task_id))
        except ValueError:
            return None
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {self._select_columns()} FROM {TABLE} WHERE id = %s", [key])
            row = cursor.fetchone()
        return self._row_to_task(row) if row else None

    def running(self, limit: int) -> list[StoredTask]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {self._select_columns()} FROM {TABLE} "
                "WHERE backend = %s AND status = 'RUNNING' ORDER BY started_at, id LIMIT %s",
                [self.backend_alias, int(limit)],
            )
            return [self._row_to_task(row) for row in cursor.fetchall()]

    def cancel(self, task_id: str, now: datetime) -> str | None:
        try:
            key = self._id_param(str(task_id))
        except ValueError:
            return None
        error = cancelled_error(now, running=False)
        with write_transaction(self.connection), self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET status = 'FAILED', errors = {self._append_json('errors')}, "
                "finished_at = %s, unique_key = NULL "
                "WHERE id = %s AND backend = %s AND status = 'READY'",
                [self._json_param(error.as_json()), self._dt_param(now), key, self.backend_alias],
            )
            if cursor.rowcount:
                self._parents_finished(cursor, [str(task_id)], now)  # workflows
                return "cancelled"
            cursor.execute(
                f"UPDATE {TABLE} SET cancel_requested_at = COALESCE(cancel_requested_at, %s) "
                "WHERE id = %s AND backend = %s AND status = 'RUNNING'",
                [self._dt_param(now), key, self.backend_alias],
            )
            return "requested" if cursor.rowcount else None

    def cancel_requested(self, task_ids: Sequence[str]) -> set[str]:
        if not task_ids:
            return set()
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {TABLE} WHERE id IN ({self._placeholders(len(task_ids))}) "
                "AND status = 'RUNNING' AND cancel_requested_at IS NOT NULL",
                [self._id_param(i) for i in task_ids],
            )
            return {str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()}

    def save_progress(
        self, task_id: str, worker_id: str, data: Any, now: datetime, *, attempt_token: str
    ) -> bool:
        with write_transaction(self.connection), self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET progress = {self._json_literal()}, progress_at = %s "
                "WHERE id = %s AND worker_id = %s AND attempt_token = %s AND status = 'RUNNING'",
                [
                    self._json_param(data),
                    self._dt_param(now),
                    self._id_param(task_id),
                    worker_id,
                    attempt_token,
                ],
            )
            return bool(cursor.rowcount)

    def _finished(self, finished_before: datetime, statuses: Sequence[str]) -> QuerySet[TaskRecord]:
        wanted = sorted(set(statuses) & {SUCCESSFUL, FAILED})
        return TaskRecord.objects.using(self.database).filter(
            backend=self.backend_alias, status__in=wanted, finished_at__lt=finished_before
        )

    def count_finished(self, finished_before: datetime, statuses: Sequence[str]) -> int:
        return self._finished(finished_before, statuses).count()

    def prune(self, finished_before: datetime, statuses: Sequence[str]) -> int:
        if not set(statuses) & {SUCCESSFUL, FAILED}:
            return 0
        records = self._finished(finished_before, statuses)
        deleted = 0
        while True:
            with write_transaction(self.connection):
                batch = list(records.values_list("id", flat=True)[:PRUNE_BATCH])
                if not batch:
                    return deleted
                deleted += TaskRecord.objects.using(self.database).filter(id__in=batch).delete()[0]
                self._forget_workflows(batch)  # workflows: their edges and group entries

    def stats(self) -> list[QueueStats]:
        with self.connection.cursor() as cursor:
            # Workflows: not the READY tasks still waiting for their parents.
            cursor.execute(
                f"SELECT queue_name, status, COUNT(*), MIN(available_at) FROM {TABLE} "
                "WHERE backend = %s AND (status <> 'READY' OR available_at < %s) "
                "GROUP BY queue_name, status ORDER BY queue_name",
                [self.backend_alias, self._dt_param(WAITING_UNTIL)],
            )
            rows = cursor.fetchall()
        by_queue: dict[str, dict[str, Any]] = {}
        for queue, status, count, oldest in rows:
            entry = by_queue.setdefault(queue, {"queue_name": queue})
            entry[status.lower()] = count
            if status == READY and oldest is not None:
                if isinstance(oldest, str):
                    oldest = parse_datetime(oldest)
                if oldest is not None and oldest.tzinfo is None:
                    oldest = oldest.replace(tzinfo=UTC)
                entry["oldest_ready_at"] = oldest
        return [QueueStats(**entry) for entry in by_queue.values()]

    # -- rate limits (brokers/database_rates.py) -----------------------------------------------

    def rate_limited(self, now: datetime) -> dict[str, datetime]:
        return database_rates.rate_limited(self, now)

    # -- selections and bulk retries (brokers/database_bulk.py) --------------------------------

    def find(
        self,
        statuses: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        queue: str | None = None,
        task_path: str | None = None,
        finished_since: datetime | None = None,
        enqueued_since: datetime | None = None,
    ) -> list[str]:
        return database_bulk.find(
            self,
            statuses,
            ids=ids,
            queue=queue,
            task_path=task_path,
            finished_since=finished_since,
            enqueued_since=enqueued_since,
        )

    def retry_failed(self, max_attempts: Mapping[str, int], now: datetime) -> list[str]:
        return database_bulk.retry_failed(self, max_attempts, now)

    # -- paused queues (brokers/database_pauses.py) --------------------------------------------

    def pause_queues(self, queues: Sequence[str], now: datetime) -> list[str]:
        return database_pauses.pause(self, queues, now)

    def resume_queues(self, queues: Sequence[str]) -> list[str]:
        return database_pauses.resume(self, queues)

    def paused_queues(self) -> dict[str, datetime]:
        return database_pauses.paused_since(self)


def _unapplied_migrations(connection: Any) -> list[str]:
    """The names of tandem's migrations not recorded as applied on ``connection``, in order.

    tandem's own migrations are a straight line of files in ``tandem.migrations`` (no squash,
    no ``replaces``), so their names and one read of ``django_migrations`` answer it: a start-up
    does not load every app's migrations into Django's graph (``MigrationExecutor``: about
    30 ms and 2 MiB in a small project). Where ``MIGRATION_MODULES`` moves tandem's migrations
    elsewhere, Django's own plan answers."""
    import pkgutil

    from django.conf import settings
    from django.db.migrations.recorder import MigrationRecorder

    if "tandem" in getattr(settings, "MIGRATION_MODULES", {}):
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connection)
        leaves = [key for key in executor.loader.graph.leaf_nodes() if key[0] == "tandem"]
        return [migration.name for migration, _ in executor.migration_plan(leaves)]
    from tandem import migrations

    shipped = sorted(
        module.name
        for module in pkgutil.iter_modules(migrations.__path__)
        if not module.ispkg and module.name[:1] not in ("_", "~")
    )
    applied = MigrationRecorder(connection).applied_migrations()
    return [name for name in shipped if ("tandem", name) not in applied]


__all__ = [
    "INSERT_BATCH",
    "INSERT_COLUMNS",
    "NOTIFY_CHANNEL",
    "TABLE",
    "TICK_TABLE",
    "DatabaseBroker",
    "write_transaction",
]

"""The database store: SQLite, PostgreSQL and MariaDB/MySQL through Django's connections.

Hot paths are single SQL statements:

- claim, PostgreSQL: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING …``;
- claim, SQLite (WAL): ``BEGIN IMMEDIATE`` + the same ``UPDATE … RETURNING`` — one short write
  transaction that waits on the busy timeout instead of failing with "database is locked";
- claim, MariaDB/MySQL (no ``UPDATE … RETURNING``): ``SELECT … FOR UPDATE SKIP LOCKED``, ``UPDATE``
  and ``SELECT`` in one transaction;
- settle: one ``executemany`` per kind of ending, in one transaction, each row guarded by its lease.

The broker uses the connection of the calling thread (Django's connections are per thread), so the
supervisor's writes never share a connection with task code.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, OperationalError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMinute
from django.utils.dateparse import parse_datetime

from tandem import rates
from tandem.brokers import (
    database_bulk,
    database_concurrency,
    database_pauses,
    database_rates,
    database_starvation,
    stuck_connections,
)
from tandem.brokers.base import (
    FAILED,
    READY,
    SUCCESSFUL,
    Broker,
    ErrorRecord,
    NewTask,
    QueueStats,
    Recovered,
    Settlement,
    StoredTask,
    WorkerInfo,
    allowed_attempts,
    cancelled_error,
    load_json,
    lost_lease_error,
    new_attempt_token,
    released_error,
)
from tandem.brokers.database_workflow import DatabaseWorkflows
from tandem.brokers.workflow import WAITING_UNTIL
from tandem.models import ScheduleTick, TaskRecord, WorkerRecord

if TYPE_CHECKING:
    from tandem.brokers.listeners import Listener

TABLE = TaskRecord._meta.db_table
NOTIFY_CHANNEL = "tandem"
COLUMNS = (
    "id",
    "backend",
    "queue_name",
    "task_path",
    "priority",
    "takes_context",
    "status",
    "args",
    "kwargs",
    "run_after",
    "available_at",
    "enqueued_at",
    "started_at",
    "last_attempted_at",
    "finished_at",
    "return_value",
    "errors",
    "worker_ids",
    "max_attempts",
    "worker_id",
    "lease_expires_at",
    "timeout",
    "unique_key",
    "progress",
    "progress_at",
    "cancel_requested_at",
    "attempt_token",
    "trace_context",
    "concurrency_key",
    "concurrency_limit",
    "on_limit",
    "rate_limit",
)
#: The columns ``enqueue()`` writes (the others start NULL), and the rows per INSERT statement.
INSERT_COLUMNS = (
    *COLUMNS[: COLUMNS.index("enqueued_at") + 1],
    "errors",
    "worker_ids",
    "max_attempts",
    "worker_id",
    "timeout",
    "trace_context",
    "concurrency_key",
    "concurrency_limit",
    "on_limit",
    "rate_limit",
)
INSERT_BATCH = 500
#: PostgreSQL's array types for ``_insert_postgresql``'s parameters, in ``INSERT_COLUMNS`` order
#: less the constant columns (status, errors, worker_ids, worker_id).
PG_UNNEST_TYPES = (
    "uuid",
    "text",
    "text",
    "text",
    "smallint",
    "boolean",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "timestamptz",
    "integer",
    "double precision",
    "text",
    "text",
    "integer",
    "text",
    "text",
)
JSON_COLUMNS = frozenset(
    {"args", "kwargs", "return_value", "errors", "worker_ids", "progress", "trace_context"}
)
ARGUMENT_COLUMNS = frozenset({"args", "kwargs"})
DATETIME_COLUMNS = frozenset(
    {
        "run_after",
        "available_at",
        "enqueued_at",
        "started_at",
        "last_attempted_at",
        "finished_at",
        "lease_expires_at",
        "progress_at",
        "cancel_requested_at",
    }
)
TICK_TABLE = ScheduleTick._meta.db_table
#: Rows per statement when pruning: short transactions, so workers are never held up for long.
PRUNE_BATCH = 1000
#: How long ``prepare()`` retries switching SQLite to WAL while other connections write.
SQLITE_WAL_SWITCH_SECONDS = 30.0


@contextmanager
def write_transaction(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """A write transaction that takes SQLite's write lock up front (``BEGIN IMMEDIATE``).

    A deferred SQLite transaction that reads and then writes fails at once with "database is
    locked" when another connection committed in between; an immediate one waits on the busy
    timeout instead. Other engines get a plain ``atomic()``.
    """
    if connection.in_atomic_block:
        # Inside the caller's transaction (or the supervisor's round): no savepoint round trips.
        with transaction.atomic(using=connection.alias, savepoint=False):
            yield
        return
    if connection.vendor != "sqlite":
        with transaction.atomic(using=connection.alias):
            yield
        return
    connection.ensure_connection()
    previous = getattr(connection, "transaction_mode", None)
    connection.transaction_mode = "IMMEDIATE"  # type: ignore[attr-defined]
    try:
        with transaction.atomic(using=connection.alias):
            yield
    finally:
        connection.transaction_mode = previous  # type: ignore[attr-defined]


def _row_values(t: NewTask) -> tuple[Any, ...]:
    """What ``enqueue()`` stores of ``t``, in ``PG_UNNEST_TYPES`` order (the id as a UUID)."""
    args_json, kwargs_json = t.json_args()
    return (
        uuid.UUID(t.id),
        t.backend,
        t.queue_name,
        t.task_path,
        t.priority,
        t.takes_context,
        args_json,
        kwargs_json,
        t.run_after,
        t.available_at,
        t.enqueued_at,
        t.max_attempts,
        t.timeout,
        None if t.trace_context is None else json.dumps(t.trace_context),
        t.concurrency_key,
        t.concurrency_limit,
        t.on_limit,
        t.rate_limit,
    )


class DatabaseBroker(DatabaseWorkflows, Broker):
    rows_in_admin = True

    def __init__(
        self,
        backend_alias: str,
        database: str | None = None,
        *,
        worker_synchronous: str | None = None,
        store_clock: bool = True,
    ) -> None:
        self.backend_alias = backend_alias
        self._database = database
        #: Leases on the database server's clock (PostgreSQL ``now()``, MariaDB
        #: ``UTC_TIMESTAMP(6)``); False: on the ``now`` the caller passes (an injected test clock).
        #: SQLite is one host: its leases are always on the caller's clock.
        self.store_clock = store_clock
        #: SQLite: ``PRAGMA synchronous`` for the supervisor's connection (``transaction()``).
        self.worker_synchronous = worker_synchronous

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def database(self) -> str:
        return self._database or router.db_for_write(TaskRecord) or "default"

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.database]

    def connection_cutter(self) -> Callable[[], bool]:
        return stuck_connections.cutter(self.connection)  # this thread's connection

    def _id_param(self, task_id: str) -> Any:
        value = uuid.UUID(task_id)
        if self.connection.features.has_native_uuid_field:
            return value
        return value.hex

    def _dt_param(self, value: datetime | None) -> Any:
        return self.connection.ops.adapt_datetimefield_value(value)

    def _server_now(self) -> str | None:
        """SQL for the database server's current time, when leases are on the store's clock.

        PostgreSQL's ``now()`` is the transaction's start: never later than the moment the
        statement runs, so a lease it grants ends no later than the worker's own deadline for it.
        MariaDB's ``UTC_TIMESTAMP(6)`` is UTC whatever the session's time zone (the column holds
        UTC, as Django writes it). None on SQLite, or when the caller's clock is the lease clock.
        """
        if not self.store_clock:
            return None
        vendor = self.connection.vendor
        if vendor == "postgresql":
            return "now()"
        if vendor == "mysql":
            return "UTC_TIMESTAMP(6)"
        return None

    def _lease_sql(self, lease_until: datetime, now: datetime) -> tuple[str, list[Any]]:
        """SQL (and its parameter) for a lease ending ``lease_until - now`` from the store's now."""
        server_now = self._server_now()
        if server_now is None:
            return "%s", [self._dt_param(lease_until)]
        micros = (lease_until - now) // timedelta(microseconds=1)
        if self.connection.vendor == "postgresql":
            return f"{server_now} + %s * interval '1 microsecond'", [micros]
        return f"{server_now} + INTERVAL %s MICROSECOND", [micros]

    def _now_sql(self, now: datetime) -> tuple[str, list[Any]]:
        """SQL (and its parameters) for "now" when comparing leases."""
        server_now = self._server_now()
        if server_now is None:
            return "%s", [self._dt_param(now)]
        return server_now, []

    def _json_param(self, value: Any) -> str:
        return json.dumps(value)

    def _placeholders(self, count: int) -> str:
        return ", ".join(["%s"] * count)

    def _select_columns(self) -> str:
        if self.connection.vendor == "postgresql":
            return ", ".join(f"{c}::text" if c in JSON_COLUMNS else c for c in COLUMNS)
        return ", ".join(COLUMNS)

    def _row_to_task(self, row: Sequence[Any]) -> StoredTask:
        values: dict[str, Any] = {}
        for name, raw in zip(COLUMNS, row, strict=True):
            value = raw
            if name in ARGUMENT_COLUMNS and isinstance(value, str | bytes):
                value = load_json(value)  # a corrupt row fails when run, not in the claim
            elif name in JSON_COLUMNS and isinstance(value, str | bytes):
                value = json.loads(value)
            elif name in DATETIME_COLUMNS and value is not None:
                if isinstance(value, str):
                    value = parse_datetime(value)
                if value is not None and value.tzinfo is None:
                    value = value.replace(tzinfo=UTC)
            values[name] = value
        values["id"] = str(uuid.UUID(str(values["id"])))
        values["takes_context"] = bool(values["takes_context"])
        values["errors"] = tuple(ErrorRecord(**e) for e in values["errors"] or ())
        values["worker_ids"] = tuple(values["worker_ids"] or ())
        values["args"] = values["args"] if values["args"] is not None else []
        values["kwargs"] = values["kwargs"] if values["kwargs"] is not None else {}
        return StoredTask(**values)

    def _append_json(self, column: str) -> str:
        """SQL that appends one JSON value (the next ``%s``, JSON text) to an array column."""
        vendor = self.connection.vendor
        if vendor == "postgresql":
            return f"{column} || jsonb_build_array(%s::jsonb)"
        if vendor == "mysql":
            return f"JSON_ARRAY_APPEND({column}, '$', JSON_EXTRACT(%s, '$'))"
        return f"json_insert({column}, '$[#]', json(%s))"

    def describe(self) -> str:
        connection = self.connection
        return f"{connection.vendor} ({connection.settings_dict.get('NAME')})"

    def setup_warnings(self) -> list[tuple[str, str]]:
        """SQLite without ``transaction_mode: "IMMEDIATE"`` (``database_checks``)."""
        from tandem.brokers.database_checks import sqlite_transaction_mode

        found = sqlite_transaction_mode(self.backend_alias, self.database, self.connection)
        return [found] if found else []

    def listener(self, on_wake: Callable[[list[str]], None]) -> Listener | None:
        """PostgreSQL: LISTEN; a SQLite file: its commit watcher; MariaDB (and an in-memory
        SQLite, which no other process shares): none, the supervisor polls."""
        from tandem.brokers.listeners import PostgresListener, SQLiteWatcher

        connection = self.connection
        name = str(connection.settings_dict["NAME"])
        if connection.vendor == "postgresql":
            return PostgresListener(self.database, self.backend_alias, on_wake)
        if connection.vendor == "sqlite" and ":memory:" not in name and "mode=memory" not in name:
            return SQLiteWatcher(name, on_wake)
        return None

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

    def notify(self, queues: Sequence[str]) -> None:
        """PostgreSQL: tell listening supervisors (delivered when the caller's transaction commits).

        The payload is ``"<backend alias>:<queue>,<queue>…"``.
        """
        if self.connection.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_notify(%s, %s)",
                    [NOTIFY_CHANNEL, f"{self.backend_alias}:{','.join(queues)}"],
                )

    # -- the contract --------------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        connection = self.connection
        if self.worker_synchronous and connection.vendor == "sqlite":
            self._worker_synchronous(connection)
        return write_transaction(connection)

    def _worker_synchronous(self, connection: BaseDatabaseWrapper) -> None:
        """Set ``PRAGMA synchronous`` once per SQLite connection the supervisor writes with.

        Only the supervisor's writes (claims, settlements, leases, recoveries) use it, never an
        ``enqueue()``. In WAL mode ``NORMAL`` skips the fsync of each commit: a process crash
        loses nothing, and a power loss can undo only the last moments of supervisor writes —
        which leases make safe: an undone claim is READY again, an undone ending runs its task
        again (at least once, as after a ``kill -9``). The next fsync (any ``enqueue()`` with the
        default ``FULL``, or a checkpoint) makes everything before it durable.
        """
        if connection.in_atomic_block:
            return  # not inside somebody's transaction (a test stepping a supervisor)
        connection.ensure_connection()
        raw = connection.connection
        if getattr(connection, "_tandem_synchronous_for", None) is raw:
            return
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA synchronous = {self.worker_synchronous}")
        connection._tandem_synchronous_for = raw  # type: ignore[attr-defined]

    def startup_problem(self) -> str | None:
        """tandem's migrations not applied to the task database: the one-line fix."""
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(self.connection)
        leaves = [key for key in executor.loader.graph.leaf_nodes() if key[0] == "tandem"]
        unapplied = [migration.name for migration, _ in executor.migration_plan(leaves)]
        if not unapplied:
            return None
        where = "" if self.database == "default" else f" --database {self.database}"
        return (
            f"tandem's tables are not migrated in database {self.database!r} (unapplied: "
            f"{', '.join(unapplied)}). Run `python manage.py migrate{where}` first."
        )

    def prepare(self) -> None:
        if self.connection.vendor == "sqlite":
            # Switching to WAL needs the database to itself, and SQLite answers "database is
            # locked" at once (no busy timeout) while another connection writes: retry a while.
            deadline = time.monotonic() + SQLITE_WAL_SWITCH_SECONDS
            with self.connection.cursor() as cursor:
                while True:
                    try:
                        cursor.execute("PRAGMA journal_mode=WAL")
                        return
                    except OperationalError:
                        if time.monotonic() >= deadline:
                            raise
                        time.sleep(0.05)

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

    def _insert(self, tasks: Sequence[NewTask], queues: Sequence[str]) -> None:
        """One ``INSERT`` of READY rows (raw SQL: the ORM's per-row work cost more than SQLite's
        commit); on PostgreSQL it also notifies ``queues``, delivered at commit."""
        if not tasks and not queues:
            return
        postgresql = self.connection.vendor == "postgresql"
        if postgresql and len(tasks) > 1:
            self._insert_postgresql(tasks, queues)
            return
        j = self._json_literal()
        row = (
            f"(%s, %s, %s, %s, %s, %s, 'READY', {j}, {j}, %s, %s, %s, {j}, {j}, %s, '', %s, {j}, "
            "%s, %s, %s, %s)"
        )
        params: list[Any] = []
        connection = self.connection  # looked up once: a per-value lookup cost ~10 % of a batch
        adapt = connection.ops.adapt_datetimefield_value
        native_uuid = connection.features.has_native_uuid_field
        for t in tasks:
            (task_id, *text, run_after, available_at, enqueued_at, max_attempts, timeout, trace) = (
                _row_values(t)[:-4]
            )
            params += [
                task_id if native_uuid else task_id.hex,
                *text,
                adapt(run_after),
                adapt(available_at),
                adapt(enqueued_at),
                "[]",
                "[]",
                max_attempts,
                timeout,
                trace,
                t.concurrency_key,
                t.concurrency_limit,
                t.on_limit,
                t.rate_limit,
            ]
        insert = (
            f"INSERT INTO {TABLE} ({', '.join(INSERT_COLUMNS)}) VALUES "
            + ", ".join([row] * len(tasks))
            if tasks
            else ""
        )
        with connection.cursor() as cursor:
            if postgresql and queues:
                payload = f"{self.backend_alias}:{','.join(queues)}"
                # A data-modifying WITH runs whether or not the main query reads it.
                cursor.execute(
                    f"WITH stored AS ({insert}) SELECT pg_notify(%s, %s)"
                    if insert
                    else "SELECT pg_notify(%s, %s)",
                    [*params, NOTIFY_CHANNEL, payload],
                )
            elif insert:
                cursor.execute(insert, params)

    def _insert_postgresql(self, tasks: Sequence[NewTask], queues: Sequence[str]) -> None:
        """PostgreSQL, several rows: one column array per parameter (``unnest``), so the
        statement's text is the same for any number of rows (a 500-row VALUES list cost more to
        bind than to run; one row is faster as VALUES: the unnest plan costs ~0.3 ms), and the
        ``pg_notify`` in the same statement (a data-modifying WITH always runs)."""
        arrays: list[list[Any]] = [[] for _ in PG_UNNEST_TYPES]
        for t in tasks:
            for column, value in zip(arrays, _row_values(t), strict=True):
                column.append(value)
        columns = ", ".join(f"%s::{kind}[]" for kind in PG_UNNEST_TYPES)
        insert = (
            f"INSERT INTO {TABLE} ({', '.join(INSERT_COLUMNS)}) SELECT u.id, u.backend, "
            "u.queue_name, u.task_path, u.priority, u.takes_context, 'READY', u.args::jsonb, "
            "u.kwargs::jsonb, u.run_after, u.available_at, u.enqueued_at, '[]'::jsonb, "
            "'[]'::jsonb, u.max_attempts, '', u.timeout, u.trace_context::jsonb, "
            "u.concurrency_key, u.concurrency_limit, u.on_limit, u.rate_limit "
            f"FROM unnest({columns}) AS u(id, backend, queue_name, task_path, priority, "
            "takes_context, args, kwargs, run_after, available_at, enqueued_at, max_attempts, "
            "timeout, trace_context, concurrency_key, concurrency_limit, on_limit, rate_limit)"
        )
        with self.connection.cursor() as cursor:
            if queues:
                payload = f"{self.backend_alias}:{','.join(queues)}"
                cursor.execute(
                    f"WITH stored AS ({insert}) SELECT pg_notify(%s, %s)"
                    if tasks
                    else "SELECT pg_notify(%s, %s)",
                    [*arrays, NOTIFY_CHANNEL, payload] if tasks else [NOTIFY_CHANNEL, payload],
                )
            elif tasks:
                cursor.execute(insert, arrays)

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

    def _claimable_where(self, queues: Sequence[str]) -> str:
        return (
            "status = 'READY' AND backend = %s "
            f"AND queue_name IN ({self._placeholders(len(queues))})"
            " AND available_at <= %s" + database_concurrency.claimable_filter(TABLE)
        )

    def running(self, limit: int) -> list[StoredTask]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {self._select_columns()} FROM {TABLE} "
                "WHERE backend = %s AND status = 'RUNNING' ORDER BY started_at, id LIMIT %s",
                [self.backend_alias, int(limit)],
            )
            return [self._row_to_task(row) for row in cursor.fetchall()]

    def has_ready(self, queues: Sequence[str], now: datetime) -> bool:
        queues = database_pauses.unpaused(self, queues)
        if not queues:
            return False
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {TABLE} WHERE {self._claimable_where(queues)} LIMIT 1",
                [self.backend_alias, *queues, self._dt_param(now)],
            )
            return cursor.fetchone() is not None

    def claim(
        self,
        queues: Sequence[str],
        limit: int,
        worker_id: str,
        lease_until: datetime,
        now: datetime,
        *,
        rate_limit: str | None = None,
    ) -> list[StoredTask]:
        if limit <= 0 or not queues:
            return []
        pool = rates.pool_key(queues)
        queues = database_pauses.unpaused(self, queues)  # paused queues start nothing
        if not queues:
            return []
        connection = self.connection
        vendor = connection.vendor
        if vendor == "sqlite" and not self.has_ready(queues, now):
            # A read needs no lock in WAL mode; only take the write lock when there is work.
            return []
        token = new_attempt_token()
        set_clause, set_params = database_concurrency.claim_set(
            self, worker_id, token, lease_until, now, guarded=True
        )
        with write_transaction(connection), connection.cursor() as cursor:
            gate = database_rates.RateGate(self, cursor, now)
            if rate_limit:  # the pool's rate caps the batch (its row stays locked till commit)
                limit = min(limit, gate.lock(pool, rate_limit).allowance(gate.now))
                if limit <= 0:
                    gate.save()
                    return []
            # A round whose picked tasks were over their rate leaves free places: another round
            # fills them, skipping the task paths this claim found full (at most a few rounds).
            full: list[str] = []
            tasks: list[StoredTask] = []
            for _ in range(database_rates.ROUNDS):
                tasks += self._claim_round(
                    cursor, queues, limit - len(tasks), full, token, set_clause, set_params,
                    worker_id, lease_until, now, gate,
                )  # fmt: skip
                filled = [p for p in gate.full_paths() if p not in full]
                if len(tasks) >= limit or not filled:
                    break
                full = [*full, *filled]
            if rate_limit:
                gate.windows[database_rates.limit_key(pool)].record(gate.now, len(tasks))
            gate.save()
        return tasks

    def _claim_round(
        self,
        cursor: Any,
        queues: Sequence[str],
        limit: int,
        full: Sequence[str],
        token: str,
        set_clause: str,
        set_params: list[Any],
        worker_id: str,
        lease_until: datetime,
        now: datetime,
        gate: database_rates.RateGate,
    ) -> list[StoredTask]:
        """One pick and claim of up to ``limit`` tasks, skipping the rate-limited tasks of full
        windows (``database_rates.claimable_filter``) and of the ``full`` task paths; in claim
        order."""
        rated, rated_params = database_rates.claimable_filter(self, TABLE, now)
        pick = (
            f"SELECT id FROM {TABLE} WHERE {self._claimable_where(queues)}{rated}"
            f"{database_rates.path_filter(TABLE, full)} "
            "ORDER BY priority DESC, available_at, enqueued_at LIMIT %s"
        )
        pick_params = [
            self.backend_alias, *queues, self._dt_param(now), *rated_params, *full, limit
        ]  # fmt: skip
        if self.connection.vendor == "mysql":
            ids = self._pick_mysql(cursor, queues, limit, now, full)
            if not ids:
                return []
            ids = self._update_mysql(cursor, ids, set_clause, set_params, worker_id, now)
            if not ids:
                return []
            marks = self._placeholders(len(ids))
            cursor.execute(
                f"SELECT {self._select_columns()} FROM {TABLE} WHERE id IN ({marks})", ids
            )
        else:
            lock = " FOR UPDATE SKIP LOCKED" if self.connection.vendor == "postgresql" else ""
            cursor.execute(
                f"UPDATE {TABLE} SET {set_clause} WHERE id IN ({pick}{lock}) "
                f"RETURNING {self._select_columns()}",
                [*set_params, *pick_params],
            )
        tasks = [self._row_to_task(row) for row in cursor.fetchall()]
        tasks.sort(key=lambda t: (-t.priority, t.available_at, t.enqueued_at))
        return self.claim_keyed(cursor, tasks, worker_id, token, lease_until, now, gate)

    def claim_keyed(
        self,
        cursor: Any,
        tasks: list[StoredTask],
        worker_id: str,
        token: str,
        lease_until: datetime,
        now: datetime,
        gate: database_rates.RateGate,
    ) -> list[StoredTask]:
        """The tasks a guarded claim picked (in claim order), with those it left READY — a
        concurrency key or a rate limit — claimed when their rate admits them
        (``database_rates``) and they get a slot (``database_concurrency``); in claim order.
        Their starts are logged in ``gate`` (the caller saves it)."""
        held = [t for t in tasks if t.concurrency_key is not None or t.rate_limit]
        if not held:
            return tasks
        admitted = gate.admit(held)
        keyed = [t for t in admitted if t.concurrency_key is not None]
        granted, refused = database_concurrency.take_slots(self, cursor, keyed, token, now)
        database_concurrency.discard(self, cursor, refused, now)
        slotted = {t.id for t in granted}
        granted = [t for t in admitted if t.concurrency_key is None or t.id in slotted]
        claimed = [t for t in tasks if t.concurrency_key is None and not t.rate_limit]
        if not granted:
            return claimed
        set_clause, set_params = database_concurrency.claim_set(
            self, worker_id, token, lease_until, now, guarded=False
        )
        ids = [self._id_param(t.id) for t in granted]
        marks = self._placeholders(len(ids))
        if self.connection.vendor == "mysql":
            ids = self._update_mysql(cursor, ids, set_clause, set_params, worker_id, now)
            if len(ids) < len(granted):  # a row MariaDB refused to update was failed instead
                moved = {str(uuid.UUID(str(i))) for i in ids}
                database_concurrency.free_slots(
                    self, cursor, [(t.id, token) for t in granted if t.id not in moved]
                )
            if not ids:
                return claimed
            marks = self._placeholders(len(ids))
            cursor.execute(
                f"SELECT {self._select_columns()} FROM {TABLE} WHERE id IN ({marks})", ids
            )
        else:
            cursor.execute(
                f"UPDATE {TABLE} SET {set_clause} WHERE id IN ({marks}) "
                f"RETURNING {self._select_columns()}",
                [*set_params, *ids],
            )
        started = {t.id: t for t in (self._row_to_task(row) for row in cursor.fetchall())}
        gate.record(started.values())
        return [
            started.get(t.id, t)
            for t in tasks
            if (t.concurrency_key is None and not t.rate_limit) or t.id in started
        ]

    def _update_mysql(
        self,
        cursor: Any,
        ids: list[Any],
        set_clause: str,
        set_params: list[Any],
        worker_id: str,
        now: datetime,
    ) -> list[Any]:
        """Move the picked rows to RUNNING; return the ids that moved.

        MariaDB checks every CHECK constraint of a row on any UPDATE of it, so a row whose JSON
        was corrupted past its ``JSON_VALID`` constraints (they were switched off when it was
        written) refuses every update — and would fail every claim of its batch, forever. Such
        a row is failed on its own instead (``_fail_unreadable_mysql``), never run.
        """
        marks = self._placeholders(len(ids))
        try:
            cursor.execute(
                f"UPDATE {TABLE} SET {set_clause} WHERE id IN ({marks})", [*set_params, *ids]
            )
            return ids
        except IntegrityError:
            pass
        moved = []
        for task_id in ids:
            try:
                cursor.execute(
                    f"UPDATE {TABLE} SET {set_clause} WHERE id = %s", [*set_params, task_id]
                )
            except IntegrityError as exc:
                self._fail_unreadable_mysql(cursor, task_id, exc, worker_id, now)
            else:
                moved.append(task_id)
        return moved

    def _fail_unreadable_mysql(
        self, cursor: Any, task_id: Any, exc: IntegrityError, worker_id: str, now: datetime
    ) -> None:
        """FAIL a row MariaDB refuses to update: text that is not JSON is kept, as a JSON string."""
        error = ErrorRecord(
            exception_class_path="tandem.exceptions.TaskNotRunnable",
            traceback=(
                "tandem.exceptions.TaskNotRunnable: The stored row could not be claimed: the "
                f"database refused to update it ({exc}); its JSON columns hold text that is not "
                "JSON (kept as a JSON string); the row was tampered with or corrupted, and the "
                "task was not run.\n"
            ),
        )
        keep = ", ".join(
            f"{c} = IF(JSON_VALID({c}) OR {c} IS NULL, {c}, JSON_QUOTE({c}))"
            for c in ("args", "kwargs", "return_value", "progress")
        )
        appended = {
            c: f"IF(JSON_VALID({c}), JSON_ARRAY_APPEND({c}, '$', JSON_EXTRACT(%s, '$')), "
            "JSON_ARRAY(JSON_EXTRACT(%s, '$')))"
            for c in ("errors", "worker_ids")
        }
        cursor.execute(
            f"UPDATE {TABLE} SET status = 'FAILED', {keep}, errors = {appended['errors']}, "
            f"worker_ids = {appended['worker_ids']}, started_at = COALESCE(started_at, %s), "
            "last_attempted_at = %s, finished_at = %s, worker_id = '', "
            "lease_expires_at = NULL, unique_key = NULL WHERE id = %s",
            [
                *[self._json_param(error.as_json())] * 2,
                *[json.dumps(worker_id)] * 2,
                *[self._dt_param(now)] * 3,
                task_id,
            ],
        )

    def _pick_mysql(
        self,
        cursor: Any,
        queues: Sequence[str],
        limit: int,
        now: datetime,
        full: Sequence[str] = (),
    ) -> list[Any]:
        """Lock up to ``limit`` claimable ids on MariaDB/MySQL, skipping rows others hold.

        InnoDB locks every row it reads for ``FOR UPDATE``; a filesort (``queue_name IN (…)``, or
        an ORDER BY the index cannot give) would read — and lock — every READY row, so one
        claimer would starve the rest. One ``queue_name = …`` branch per queue, ordered exactly
        as the claim index, reads (and locks) at most ``limit`` rows each; the best ``limit`` of
        them are kept and the other locks end with the transaction.
        """
        rated, rated_params = database_rates.claimable_filter(self, TABLE, now)
        branch = (
            f"(SELECT id, priority, available_at, enqueued_at FROM {TABLE} WHERE status = 'READY' "
            "AND backend = %s AND queue_name = %s AND available_at <= %s"
            f"{database_concurrency.claimable_filter(TABLE)}"
            f"{rated}{database_rates.path_filter(TABLE, full)} "
            "ORDER BY priority DESC, available_at, enqueued_at LIMIT %s FOR UPDATE SKIP LOCKED)"
        )
        params: list[Any] = []
        for queue in queues:
            params += [self.backend_alias, queue, self._dt_param(now), *rated_params, *full]
            params.append(limit)
        cursor.execute(" UNION ALL ".join([branch] * len(queues)), params)
        rows = sorted(cursor.fetchall(), key=lambda row: (-row[1], row[2], row[3]))
        return [row[0] for row in rows[:limit]]

    def renew(
        self, worker_id: str, attempts: Mapping[str, str], lease_until: datetime, now: datetime
    ) -> set[str]:
        if not attempts:
            return set()
        lease_sql, lease_params = self._lease_sql(lease_until, now)
        pairs = ", ".join(["(%s, %s)"] * len(attempts))
        keys = [v for task_id, token in attempts.items() for v in (self._id_param(task_id), token)]
        where = f"(id, attempt_token) IN ({pairs}) AND worker_id = %s AND status = 'RUNNING'"
        connection = self.connection
        with write_transaction(connection), connection.cursor() as cursor:
            update = f"UPDATE {TABLE} SET lease_expires_at = {lease_sql} WHERE {where}"
            if connection.vendor == "mysql":
                cursor.execute(update, [*lease_params, *keys, worker_id])
                cursor.execute(f"SELECT id FROM {TABLE} WHERE {where}", [*keys, worker_id])
            else:
                cursor.execute(f"{update} RETURNING id", [*lease_params, *keys, worker_id])
            return {str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()}

    def settle(self, settlements: Sequence[Settlement]) -> int:
        if not settlements:
            return 0
        guard = "WHERE id = %s AND worker_id = %s AND attempt_token = %s AND status = 'RUNNING'"
        release_lease = "worker_id = '', lease_expires_at = NULL, cancel_requested_at = NULL"
        free_key = "unique_key = NULL"
        finished_plain: list[list[Any]] = []
        finished_error: list[list[Any]] = []
        retried: list[list[Any]] = []
        for s in settlements:
            key = [self._id_param(s.id), s.worker_id, s.attempt_token]
            if s.status == READY:
                assert s.error is not None and s.retry_at is not None
                retried.append(
                    [self._json_param(s.error.as_json()), self._dt_param(s.retry_at), *key]
                )
            elif s.error is None:
                finished_plain.append(
                    [
                        s.status,
                        self._json_param(s.return_value),
                        self._dt_param(s.finished_at),
                        *key,
                    ]
                )
            else:
                finished_error.append(
                    [
                        s.status,
                        self._json_param(s.error.as_json()),
                        self._dt_param(s.finished_at),
                        *key,
                    ]
                )
        written = 0
        with write_transaction(self.connection), self.connection.cursor() as cursor:
            if finished_plain:
                cursor.executemany(
                    f"UPDATE {TABLE} SET status = %s, return_value = {self._json_literal()}, "
                    f"finished_at = %s, {free_key}, {release_lease} {guard}",
                    finished_plain,
                )
                written += max(cursor.rowcount, 0)
            if finished_error:
                cursor.executemany(
                    f"UPDATE {TABLE} SET status = %s, errors = {self._append_json('errors')}, "
                    f"finished_at = %s, {free_key}, {release_lease} {guard}",
                    finished_error,
                )
                written += max(cursor.rowcount, 0)
            if retried:
                cursor.executemany(
                    f"UPDATE {TABLE} SET status = 'READY', errors = {self._append_json('errors')}, "
                    f"available_at = %s, {release_lease} {guard}",
                    retried,
                )
                written += max(cursor.rowcount, 0)
            database_concurrency.free_slots(
                self, cursor, [(s.id, s.attempt_token) for s in settlements if s.holds_slot]
            )
            if finished := [s for s in settlements if s.status != READY]:  # workflows
                now = max(s.finished_at for s in finished)
                self._parents_finished(cursor, [s.id for s in finished], now)
        return written

    def _json_literal(self) -> str:
        vendor = self.connection.vendor
        if vendor == "postgresql":
            return "%s::jsonb"
        return "%s"

    def release(self, worker_id: str, attempts: Mapping[str, str], now: datetime) -> int:
        if not attempts:
            return 0
        error = released_error(worker_id, now)
        rows = [
            [
                self._json_param(error.as_json()),
                self._dt_param(now),
                self._id_param(task_id),
                worker_id,
                token,
            ]
            for task_id, token in attempts.items()
        ]
        with write_transaction(self.connection), self.connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {TABLE} SET status = 'READY', errors = {self._append_json('errors')}, "
                "available_at = %s, worker_id = '', lease_expires_at = NULL, "
                "cancel_requested_at = NULL "
                "WHERE id = %s AND worker_id = %s AND attempt_token = %s AND status = 'RUNNING'",
                rows,
            )
            released = int(max(cursor.rowcount, 0))
            database_concurrency.free_slots(self, cursor, attempts.items())
            return released

    def recover_expired(self, now: datetime, recovery_max_attempts: int) -> list[Recovered]:
        connection = self.connection
        lock = " FOR UPDATE SKIP LOCKED" if connection.vendor in ("postgresql", "mysql") else ""
        recovered: list[Recovered] = []
        now_sql, now_params = self._now_sql(now)
        with write_transaction(connection), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {self._select_columns()} FROM {TABLE} WHERE status = 'RUNNING' "
                f"AND lease_expires_at < {now_sql} AND backend = %s LIMIT 500{lock}",
                [*now_params, self.backend_alias],
            )
            expired = [self._row_to_task(row) for row in cursor.fetchall()]
            for task in expired:
                error = lost_lease_error(task.worker_id, task.lease_expires_at, now)
                spent = task.attempts >= allowed_attempts(task.max_attempts, recovery_max_attempts)
                status = FAILED if spent else READY
                free_key = ", unique_key = NULL" if spent else ""
                cursor.execute(
                    f"UPDATE {TABLE} SET status = %s, errors = {self._append_json('errors')}, "
                    "finished_at = %s, available_at = %s, worker_id = '', lease_expires_at = NULL, "
                    f"cancel_requested_at = NULL{free_key} "
                    "WHERE id = %s AND worker_id = %s AND attempt_token = %s "
                    "AND status = 'RUNNING'",
                    [
                        status,
                        self._json_param(error.as_json()),
                        self._dt_param(now if spent else None),
                        self._dt_param(task.available_at if spent else now),
                        self._id_param(task.id),
                        task.worker_id,
                        task.attempt_token,
                    ],
                )
                if cursor.rowcount:
                    recovered.append(Recovered(id=task.id, status=status, worker_id=task.worker_id))
                    database_concurrency.free_slots(self, cursor, [(task.id, task.attempt_token)])
                    if spent:  # workflows
                        self._parents_finished(cursor, [task.id], now)
        return recovered

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

    def fire_tick(self, name: str, tick_at: datetime, task: NewTask) -> str | None:
        vendor = self.connection.vendor
        verb, conflict = (
            ("INSERT IGNORE", "") if vendor == "mysql" else ("INSERT", " ON CONFLICT DO NOTHING")
        )
        with write_transaction(self.connection), self.connection.cursor() as cursor:
            cursor.execute(
                f"{verb} INTO {TICK_TABLE} (backend, name, tick_at, task_id, created_at) "
                f"VALUES (%s, %s, %s, %s, %s){conflict}",
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

    # -- the starvation claim (brokers/database_starvation.py) ---------------------------------

    def claim_starved(
        self,
        queues: Sequence[str],
        limit: int,
        worker_id: str,
        lease_until: datetime,
        now: datetime,
        starved_before: datetime,
        *,
        rate_limit: str | None = None,
    ) -> list[StoredTask]:
        return database_starvation.claim_starved(
            self, queues, limit, worker_id, lease_until, now, starved_before, rate_limit
        )

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


__all__ = ["NOTIFY_CHANNEL", "DatabaseBroker", "write_transaction"]

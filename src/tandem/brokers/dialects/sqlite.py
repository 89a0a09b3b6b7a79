"""SQLite (WAL): one host, one writer at a time.

Leases are on the caller's clock; a write transaction takes the write lock up front (``BEGIN
IMMEDIATE``), which serialises every claimer, so picks take no row locks; a claim reads first
(no lock in WAL mode) and takes the write lock only when there is work.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import OperationalError, transaction
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX

from tandem.brokers.database_rows import INSERT_COLUMNS, TABLE
from tandem.brokers.dialects.base import Dialect

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from tandem.brokers.base import NewTask
    from tandem.brokers.database_store import DatabaseStore
    from tandem.brokers.listeners import Listener

#: How long ``prepare()`` retries switching SQLite to WAL while other connections write.
SQLITE_WAL_SWITCH_SECONDS = 30.0


class SQLiteDialect(Dialect):
    vendor = "sqlite"
    skip_locked = ""
    for_update = ""
    probe_before_claim = True
    #: SQLite plans a ``LIMIT`` from its bound value, so a statement whose ``LIMIT`` is a
    #: parameter is prepared again every time it runs: for the claim's ``UPDATE … RETURNING``
    #: that was ~130 µs of its ~180 µs. A literal limit keeps it prepared (the statement cache
    #: holds one per batch size).
    literal_limit = True

    def cursor(self, connection: BaseDatabaseWrapper) -> Any:
        """A ``QmarkCursor`` when nothing else is to see the statements (no query log, no
        ``execute_wrapper``), else Django's cursor."""
        if connection.queries_logged or connection.execute_wrappers:
            return connection.cursor()
        return QmarkCursor(connection)

    def datetime_param(self, connection: BaseDatabaseWrapper, value: datetime | None) -> Any:
        """``datetime_text``."""
        return datetime_text(connection, value)

    def probe_first(self, connection: BaseDatabaseWrapper, rate_limit: str | None) -> bool:
        """Probe, unless the claim runs in a write transaction this dialect began
        (``write_transaction``: the supervisor's round), which holds the write lock already:
        there the probe would only add a statement, and the claim finds what it would have
        found. A pool with a ``rate_limit`` still probes: its claim locks (and may create) the
        pool's rate window before it picks, which an empty claim should not do."""
        if rate_limit or not connection.in_atomic_block:
            return True
        return getattr(connection, "_tandem_write_locked", None) is not connection.connection

    def write_transaction(self, connection: BaseDatabaseWrapper) -> AbstractContextManager[None]:
        """A write transaction that takes SQLite's write lock up front (``BEGIN IMMEDIATE``).

        A deferred SQLite transaction that reads and then writes fails at once with "database is
        locked" when another connection committed in between; an immediate one waits on the
        busy timeout instead.
        """
        return _immediate(connection)

    def prepare(self, connection: BaseDatabaseWrapper) -> None:
        # Switching to WAL needs the database to itself, and SQLite answers "database is
        # locked" at once (no busy timeout) while another connection writes: retry a while.
        deadline = time.monotonic() + SQLITE_WAL_SWITCH_SECONDS
        with connection.cursor() as cursor:
            while True:
                try:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    return
                except OperationalError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)

    def worker_synchronous(self, connection: BaseDatabaseWrapper, mode: str) -> None:
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
            cursor.execute(f"PRAGMA synchronous = {mode}")
        connection._tandem_synchronous_for = raw  # type: ignore[attr-defined]

    def setup_warnings(
        self, alias: str, database: str, connection: BaseDatabaseWrapper
    ) -> list[tuple[str, str]]:
        """(message, hint) when ``TASKS[alias]`` keeps its tasks in a SQLite database whose
        transactions start DEFERRED: the site's read-then-write transactions then fail at once
        with 'database is locked' while a worker writes (system check tandem.W003, the banner)."""
        mode = str(connection.settings_dict.get("OPTIONS", {}).get("transaction_mode") or "")
        if mode.upper() == "IMMEDIATE":
            return []
        return [
            (
                f"TASKS[{alias!r}] writes its tasks to the SQLite database {database!r}, which "
                f"uses SQLite's {mode.upper() or 'default (DEFERRED)'} transaction mode: while a "
                "worker writes, the site's transactions that read and then write fail at once "
                "with 'database is locked' (the timeout does not help).",
                f'Add "transaction_mode": "IMMEDIATE" to DATABASES[{database!r}]["OPTIONS"], '
                f'e.g. "OPTIONS": {{"transaction_mode": "IMMEDIATE", "timeout": 20}} '
                "(docs/how-to/postgres-mariadb-sqlite.md).",
            )
        ]

    def listener(
        self, broker: DatabaseStore, on_wake: Callable[[list[str]], None]
    ) -> Listener | None:
        """A file: its wake-up socket and commit watcher (``sqlite_wake``); an in-memory
        database (no other process shares it): none, the supervisor polls."""
        from tandem.brokers.sqlite_wake import SQLiteListener, database_file

        name = str(broker.connection.settings_dict["NAME"])
        if database_file(name) is None:
            return None
        return SQLiteListener(name, broker.backend_alias, on_wake)

    def notify(self, connection: BaseDatabaseWrapper, channel: str, payload: str) -> None:
        """A datagram to every listening worker of this file once the transaction commits (at
        once under autocommit): ``sqlite_wake.send``."""
        from tandem.brokers import sqlite_wake

        name = str(connection.settings_dict["NAME"])
        transaction.on_commit(partial(sqlite_wake.send, name, payload), using=connection.alias)

    def insert_tasks(
        self, broker: DatabaseStore, tasks: Sequence[NewTask], queues: Sequence[str]
    ) -> None:
        """The ``INSERT``, then the wake-up of ``queues`` (sent at commit).

        Django's SQLite cursor turns each ``%s`` into ``?`` with a regular expression over the
        whole statement, and adapts each datetime on its own: together a third of a bulk
        insert's time. When nothing else is to see the statement — no query log (``DEBUG``,
        ``assertNumQueries``), no ``execute_wrapper`` — it is written with ``?`` and run on the
        connection's own sqlite3 connection, with the checks Django's cursor makes around it
        (thread sharing, a broken transaction, its exception classes); the rows are the same.
        """
        if not tasks:
            return
        connection = broker.connection
        if connection.queries_logged or connection.execute_wrappers:
            super().insert_tasks(broker, tasks, queues)
        else:
            statement = f"INSERT INTO {TABLE} ({', '.join(INSERT_COLUMNS)}) VALUES " + ", ".join(
                [QMARK_ROW] * len(tasks)
            )
            params = insert_params(connection, tasks)
            connection.close_if_health_check_failed()
            connection.ensure_connection()
            connection.validate_thread_sharing()
            connection.validate_no_broken_transaction()
            with connection.wrap_database_errors:
                connection.connection.execute(statement, params)
        if queues:
            broker.notify(queues)

    def append_json(self, column: str) -> str:
        return f"json_insert({column}, '$[#]', json(%s))"

    def row_lock(self, *, share: bool = False, of: str = "") -> str:
        return ""


#: One row of ``INSERT_COLUMNS`` for ``insert_params``, in sqlite3's own placeholders.
QMARK_ROW = "(?, ?, ?, ?, ?, ?, 'READY', ?, ?, ?, ?, ?, '[]', '[]', ?, '', ?, ?, ?, ?, ?, ?)"


def datetime_text(connection: BaseDatabaseWrapper, value: datetime | None) -> Any:
    """``value`` as Django adapts it for SQLite; an aware datetime in the connection's time zone
    (every ``timezone.now()`` under ``USE_TZ``) without Django's checks and conversions."""
    zone = connection.timezone  # None without USE_TZ
    if zone is not None and type(value) is datetime and value.tzinfo is zone:
        return str(value.replace(tzinfo=None))
    return connection.ops.adapt_datetimefield_value(value)


def insert_params(connection: BaseDatabaseWrapper, tasks: Sequence[NewTask]) -> list[Any]:
    """The parameters of ``QMARK_ROW`` for each of ``tasks``, as Django would adapt them
    (``Dialect.values_insert``), more cheaply: an id made by ``str(uuid4())`` loses its dashes
    without being parsed, an aware datetime in the connection's time zone (every
    ``timezone.now()``) is written without Django's conversions, and a task's ``run_after`` (one
    for all the items of an ``enqueue_many``) is adapted once."""
    text = partial(datetime_text, connection)
    run_after_text: dict[datetime, Any] = {}
    params: list[Any] = []
    add = params.extend
    for t in tasks:
        task_id = t.id
        if len(task_id) == 36 and task_id[8] == task_id[13] == task_id[18] == task_id[23] == "-":
            task_id = task_id.replace("-", "").lower()
        else:
            task_id = uuid.UUID(task_id).hex
        enqueued_at = text(t.enqueued_at)
        run_after = t.run_after
        if run_after is None:
            after = None
            available_at = enqueued_at
        else:
            after = run_after_text.get(run_after)
            if after is None:
                after = run_after_text[run_after] = text(run_after)
            available_at = after
        args_json, kwargs_json = t.json_args()
        trace = t.trace_context
        add(
            (
                task_id,
                t.backend,
                t.queue_name,
                t.task_path,
                t.priority,
                t.takes_context,
                args_json,
                kwargs_json,
                after,
                available_at,
                enqueued_at,
                t.max_attempts,
                t.timeout,
                None if trace is None else json.dumps(trace),
                t.concurrency_key,
                t.concurrency_limit,
                t.on_limit,
                t.rate_limit,
            )
        )
    return params


@contextmanager
def _immediate(connection: BaseDatabaseWrapper) -> Iterator[None]:
    connection.ensure_connection()
    previous = getattr(connection, "transaction_mode", None)
    connection.transaction_mode = "IMMEDIATE"  # type: ignore[attr-defined]
    try:
        with transaction.atomic(using=connection.alias):
            # ``BEGIN IMMEDIATE`` ran: this sqlite3 connection holds the write lock until the
            # block ends (``SQLiteDialect.probe_first``).
            connection._tandem_write_locked = connection.connection  # type: ignore[attr-defined]
            try:
                yield
            finally:
                connection._tandem_write_locked = None  # type: ignore[attr-defined]
    finally:
        connection.transaction_mode = previous  # type: ignore[attr-defined]


#: Statements in Django's ``format`` style -> the same in sqlite3's ``qmark`` style.
_QMARK: dict[str, str] = {}
_QMARK_SIZE = 512


def qmark(sql: str) -> str:
    """``sql`` converted as Django's SQLite cursor converts it (``%s`` -> ``?``, ``%%`` ->
    ``%``), once per statement text: the claim's is some 2,000 characters, and the regular
    expression over it cost more than the statement's own run."""
    converted = _QMARK.get(sql)
    if converted is None:
        converted = FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")
        if len(_QMARK) >= _QMARK_SIZE:
            _QMARK.clear()
        _QMARK[sql] = converted
    return converted


class QmarkCursor:
    """A cursor on the connection's own sqlite3 connection, for the statements a worker runs
    per task (``SQLiteDialect.cursor``): what Django's cursor does around a statement — the
    connection's health check, thread-sharing and broken-transaction checks, its exception
    classes — less its wrappers' work (the ``%s`` conversion is cached, ``qmark``). The
    rows, row counts and parameters' adaptation are sqlite3's, as under Django's cursor.

    A statement run while the query log is on or an ``execute_wrapper`` is installed (they may
    start after the cursor was made) goes through a Django cursor instead, which then serves
    the fetches; so does one with ``pyformat`` (mapping) parameters.
    """

    __slots__ = ("_active", "_raw", "db")

    def __init__(self, db: BaseDatabaseWrapper) -> None:
        self.db = db
        db.close_if_health_check_failed()
        db.ensure_connection()
        db.validate_thread_sharing()
        with db.wrap_database_errors:
            self._raw = db.connection.cursor()
        self._active: Any = self._raw

    def _django(self) -> Any:
        if self._active is self._raw:
            self._active = self.db.cursor()
        return self._active

    def execute(self, sql: str, params: Any = None) -> QmarkCursor:
        db = self.db
        if db.execute_wrappers or db.queries_logged or isinstance(params, Mapping):
            self._django().execute(sql, params)
            return self
        db.validate_no_broken_transaction()
        self._active = self._raw
        with db.wrap_database_errors:
            if params is None:
                self._raw.execute(sql)
            else:
                self._raw.execute(qmark(sql), params)
        return self

    def executemany(self, sql: str, param_list: Any) -> QmarkCursor:
        db = self.db
        if (
            db.execute_wrappers
            or db.queries_logged
            or not isinstance(param_list, list | tuple)
            or (param_list and isinstance(param_list[0], Mapping))
        ):
            self._django().executemany(sql, param_list)
            return self
        db.validate_no_broken_transaction()
        self._active = self._raw
        with db.wrap_database_errors:
            self._raw.executemany(qmark(sql), param_list)
        return self

    def fetchone(self) -> Any:
        with self.db.wrap_database_errors:
            return self._active.fetchone()

    def fetchmany(self, size: int | None = None) -> list[Any]:
        with self.db.wrap_database_errors:
            if size is None:
                return self._active.fetchmany()  # type: ignore[no-any-return]
            return self._active.fetchmany(size)  # type: ignore[no-any-return]

    def fetchall(self) -> list[Any]:
        with self.db.wrap_database_errors:
            return self._active.fetchall()  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Any]:
        with self.db.wrap_database_errors:
            yield from self._active

    @property
    def rowcount(self) -> int:
        return int(self._active.rowcount)

    @property
    def lastrowid(self) -> Any:
        return self._active.lastrowid

    @property
    def description(self) -> Any:
        return self._active.description

    def close(self) -> None:
        if self._active is not self._raw:
            self._active.close()
        self._raw.close()

    def __enter__(self) -> QmarkCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        # As Django's cursor: errors in clean-up are not useful.
        with suppress(sqlite3.Error):
            self.close()


__all__ = ["QmarkCursor", "SQLiteDialect", "qmark"]

"""SQLite (WAL): one host, one writer at a time.

Leases are on the caller's clock; a write transaction takes the write lock up front (``BEGIN
IMMEDIATE``), which serialises every claimer, so picks take no row locks; a claim reads first
(no lock in WAL mode) and takes the write lock only when there is work.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import OperationalError, transaction

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


def insert_params(connection: BaseDatabaseWrapper, tasks: Sequence[NewTask]) -> list[Any]:
    """The parameters of ``QMARK_ROW`` for each of ``tasks``, as Django would adapt them
    (``Dialect.values_insert``), more cheaply: an id made by ``str(uuid4())`` loses its dashes
    without being parsed, an aware datetime in the connection's time zone (every
    ``timezone.now()``) is written without Django's conversions, and a task's ``run_after`` (one
    for all the items of an ``enqueue_many``) is adapted once."""
    adapt = connection.ops.adapt_datetimefield_value
    zone = connection.timezone  # None without USE_TZ

    def text(value: datetime) -> Any:
        if type(value) is datetime and zone is not None and value.tzinfo is zone:
            return str(value.replace(tzinfo=None))
        return adapt(value)

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
            yield
    finally:
        connection.transaction_mode = previous  # type: ignore[attr-defined]


__all__ = ["SQLiteDialect"]

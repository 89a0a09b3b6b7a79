"""PostgreSQL: leases on the server's clock, ``UPDATE … RETURNING`` claims whose pick skips
locked rows, ``jsonb`` columns, ``LISTEN``/``NOTIFY``, and several-row inserts as column arrays
(``unnest``), one statement text whatever the number of rows."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tandem.brokers.database_rows import (
    INSERT_COLUMNS,
    NOTIFY_CHANNEL,
    PG_UNNEST_TYPES,
    TABLE,
    row_values,
)
from tandem.brokers.dialects.base import Dialect

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from tandem.brokers.base import NewTask, Settlement
    from tandem.brokers.database_store import DatabaseStore, Ride
    from tandem.brokers.listeners import Listener


#: The columns ``row_values`` gives, each with its PostgreSQL type (``PG_UNNEST_TYPES``).
UNNEST_COLUMNS = tuple(
    zip(
        (
            "id",
            "backend",
            "queue_name",
            "task_path",
            "priority",
            "takes_context",
            "args",
            "kwargs",
            "run_after",
            "available_at",
            "enqueued_at",
            "max_attempts",
            "timeout",
            "trace_context",
            "concurrency_key",
            "concurrency_limit",
            "on_limit",
            "rate_limit",
        ),
        PG_UNNEST_TYPES,
        strict=True,
    )
)


def _pg_element(value: Any) -> str:
    """An element of a PostgreSQL array literal of uuid, integer or boolean values."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | uuid.UUID):
        return str(value)
    raise TypeError(f"not a uuid, integer or boolean: {value!r}")


#: ``settle_rows``' statement: the endings as column arrays (ids, worker ids, attempt tokens,
#: statuses, return values, errors as JSON text, finish times, retry times), then the ids again.
SETTLE = (
    f"UPDATE {TABLE} AS t SET status = v.status, "
    "return_value = CASE WHEN v.result IS NULL THEN t.return_value ELSE v.result::jsonb END, "
    "errors = CASE WHEN v.error IS NULL THEN t.errors "
    "ELSE t.errors || jsonb_build_array(v.error::jsonb) END, "
    "finished_at = CASE WHEN v.status = 'READY' THEN t.finished_at ELSE v.finished_at END, "
    "available_at = CASE WHEN v.status = 'READY' THEN v.retry_at ELSE t.available_at END, "
    "unique_key = CASE WHEN v.status = 'READY' THEN t.unique_key END, "
    "worker_id = '', lease_expires_at = NULL, cancel_requested_at = NULL "
    "FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::timestamptz[], %s::timestamptz[]) "
    "AS v(id, worker_id, token, status, result, error, finished_at, retry_at) "
    "WHERE t.id = ANY(%s::uuid[]) AND t.id = v.id AND t.worker_id = v.worker_id "
    "AND t.attempt_token = v.token AND (t.status = 'RUNNING') IS TRUE"
)


def _sends_many(cursor: Any) -> bool:
    """``cursor`` (Django's wrapper, or a raw cursor) sends its statements in PostgreSQL's
    simple protocol, where one message may hold several: psycopg 3's ``ClientCursor``."""
    try:
        from psycopg import ClientCursor
    except ImportError:  # psycopg 2
        return False
    return isinstance(getattr(cursor, "cursor", cursor), ClientCursor)


def _text_array(values: Sequence[str | None]) -> str:
    """A PostgreSQL array literal of text values (None: NULL), bound as ONE parameter: psycopg
    adapts a list element by element in Python, which cost more than the statement it sent."""
    return (
        "{"
        + ",".join(
            "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for value in values
        )
        + "}"
    )


#: A task id as ``str(uuid.UUID(…))`` writes it: goes into an id array as it is.
_CANONICAL_ID = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid_text(task_id: str) -> str:
    """A task id as a ``uuid[]`` literal's element (any other spelling is rewritten, or fails
    as ``uuid.UUID`` does: nothing else reaches the array)."""
    return task_id if _CANONICAL_ID.fullmatch(task_id) else str(uuid.UUID(task_id))


class PostgreSQLDialect(Dialect):
    vendor = "postgresql"
    #: The transaction's start: never later than the moment the statement runs, so a lease it
    #: grants ends no later than the worker's own deadline for it.
    server_now = "now()"
    #: Not the transaction's ``now()``: a claim that waited for another's window lock logs its
    #: starts after that claim's, never before them.
    clock_now = "clock_timestamp()"
    json_placeholder = "%s::jsonb"
    #: Its insert is one statement of column arrays whatever its size.
    workflow_insert_batch = 5000

    #: A claim of plain tasks is one ``UPDATE … RETURNING``: under autocommit it is one round
    #: trip, where ``BEGIN``, the paused-queue read, the claim and ``COMMIT`` were four.
    claims_alone = True

    pauses_in_pick = True

    #: A round's claim rides in its settle's message (``settle_rows``).
    rides_settle = True

    @contextmanager
    def own_commit(self, connection: BaseDatabaseWrapper) -> Iterator[bool]:
        """Autocommit already, or a transaction that has sent nothing yet: psycopg sends its
        ``BEGIN`` with the first statement, so until then the connection can run statements in
        autocommit and go back, and the transaction's ``COMMIT`` (psycopg skips it on an idle
        connection) then ends a transaction that never began."""
        if connection.get_autocommit():
            yield True
            return
        raw = connection.connection
        if getattr(raw, "pgconn", None) is None:  # not psycopg 3 (psycopg2), or not connected
            yield False
            return
        from psycopg.pq import TransactionStatus

        if raw.pgconn.transaction_status != TransactionStatus.IDLE:
            yield False
            return
        raw.autocommit = True
        try:
            yield True
        finally:
            try:
                raw.autocommit = False
            except Exception:
                # Only a broken connection is not idle after an autocommit statement: closed, it
                # can never run a statement outside the transaction Django believes open.
                raw.close()

    @contextmanager
    def _begun_by(self, connection: BaseDatabaseWrapper, cursor: Any) -> Iterator[str]:
        """``"BEGIN; "`` for the statement run in the block to send first, where it may open
        the transaction itself; "" otherwise.

        Django opens a transaction (``atomic``) by turning psycopg's autocommit off, and
        psycopg then sends a ``BEGIN`` alone, one round trip, before the first statement. Where
        nothing was sent yet, in a transaction whose outermost ``atomic`` commits it and turns
        autocommit back on at its end (``commit_on_exit``), the statement carries the
        ``BEGIN`` instead: psycopg runs it in autocommit mode, so it sends none of its own.
        From there psycopg follows the server's transaction status: it sends no ``BEGIN``
        before the transaction's next statements and sends its ``COMMIT`` or ``ROLLBACK``
        as before. A message that failed before its ``BEGIN`` ran leaves psycopg as it was.

        Only psycopg 3's client-side cursor sends several statements in one message
        (``_sends_many``), and only a plain ``BEGIN`` is psycopg's own (no isolation level,
        read-only or deferrable option set on the connection)."""
        raw = connection.connection
        pgconn = getattr(raw, "pgconn", None)
        if not (
            pgconn is not None
            and connection.in_atomic_block
            and connection.commit_on_exit
            and not connection.needs_rollback
            and not raw.autocommit
            and raw.isolation_level is None
            and raw.read_only is None
            and raw.deferrable is None
            and _sends_many(cursor)
        ):
            yield ""
            return
        from psycopg.pq import TransactionStatus

        if pgconn.transaction_status != TransactionStatus.IDLE:
            yield ""
            return
        raw.autocommit = True
        try:
            yield "BEGIN; "
        finally:
            if pgconn.transaction_status == TransactionStatus.IDLE:
                try:
                    raw.autocommit = False
                except Exception:
                    raw.close()  # broken: never a statement outside the transaction Django holds

    def listener(
        self, broker: DatabaseStore, on_wake: Callable[[list[str]], None]
    ) -> Listener | None:
        from tandem.brokers.listeners import PostgresListener

        return PostgresListener(broker.database, broker.backend_alias, on_wake)

    def notify(self, connection: BaseDatabaseWrapper, channel: str, payload: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [channel, payload])

    def add_microseconds(self, sql: str) -> str:
        return f"{sql} + %s * interval '1 microsecond'"

    def json_text(self, column: str) -> str:
        return f"{column}::text"

    def append_json(self, column: str) -> str:
        return f"{column} || jsonb_build_array(%s::jsonb)"

    def row_lock(self, *, share: bool = False, of: str = "") -> str:
        return (" FOR SHARE" if share else " FOR UPDATE") + (f" OF {of}" if of else "")

    def any_id(
        self, broker: DatabaseStore, column: str, ids: Sequence[str]
    ) -> tuple[str, list[Any]] | None:
        return f"{column} = ANY(%s::uuid[])", ["{" + ",".join(map(_uuid_text, ids)) + "}"]

    def settle_rows(
        self,
        broker: DatabaseStore,
        cursor: Any,
        settlements: Sequence[Settlement],
        probe: tuple[str, list[Any]] | None,
        ride: Ride | None = None,
    ) -> tuple[int, list[Any] | None]:
        """Every ending in ONE ``UPDATE`` joined to column arrays (``unnest``): an
        ``executemany`` sent a statement per task, each parsed and planned on its own, which
        was most of a busy worker's time in the store. Each row keeps its guard — its worker
        id, attempt token and RUNNING — so a stale attempt's ending is still refused.

        A row's kind of ending picks what is written: a retry (READY) appends its error and
        becomes claimable at ``retry_at``, keeping its unique key; a finish writes
        ``finished_at`` and frees the key, with its return value when it has no error, else
        appending the error.

        The rows are found by their ids (``id = ANY(…)``, the primary key) and the status is
        checked as ``IS TRUE``, which no index serves: planned on statistics from before the
        tasks started (few RUNNING rows), ``status = 'RUNNING'`` made the planner read every
        RUNNING row through the claim index, however many other workers run.

        ``probe`` (the workflow edges of the finished tasks) goes in the same message, a second
        statement after the ``UPDATE``: one round trip instead of two. It must stay a
        statement of its own: in READ COMMITTED each statement reads a fresh snapshot, so it
        sees the edges of a workflow pushed while the ``UPDATE`` waited for the parent's row
        lock; a subquery of the ``UPDATE`` would read the snapshot from before that wait.
        ``ride`` (the round's claim, announced by ``DatabaseClaims.claim_ahead``) goes last in
        the same message, its rows kept on it for the claim: the round's settle and claim are
        one round trip, then its ``COMMIT``, where they were two. It is the same statement the
        claim would send next in the same transaction, with the same guards (``SKIP LOCKED``,
        a fresh attempt token, the lease on the server's clock), only sent sooner.

        Only psycopg 3's client-side cursor (Django's default) sends several statements at
        once: with server-side binding, or psycopg 2, the probe is left to the caller (and the
        claim to itself)."""
        ids: list[str] = []
        workers: list[str] = []
        tokens: list[str] = []
        statuses: list[str] = []
        results: list[str | None] = []
        errors: list[str | None] = []
        finished: list[str | None] = []
        retries: list[str | None] = []
        for s in settlements:
            ids.append(_uuid_text(s.id))
            workers.append(s.worker_id)
            tokens.append(s.attempt_token)
            statuses.append(s.status)
            error = None if s.error is None else broker._json_param(s.error.as_json())
            errors.append(error)
            if s.status == "READY":
                assert s.error is not None and s.retry_at is not None
                results.append(None)
                finished.append(None)
                retries.append(s.retry_at.isoformat())
            else:
                results.append(None if error is not None else broker._json_param(s.return_value))
                finished.append(s.finished_at.isoformat())
                retries.append(None)
        id_array = "{" + ",".join(ids) + "}"
        many = _sends_many(cursor)
        probe_sql, probe_params = probe if probe and many else ("", [])
        if ride is not None and (not many or ride.rows is not None):
            ride = None
        columns = (workers, tokens, statuses, results, errors, finished, retries)
        params = [id_array, *[_text_array(column) for column in columns], id_array]
        sql = SETTLE + (f"; {probe_sql}" if probe_sql else "") + (f"; {ride.sql}" if ride else "")
        with self._begun_by(broker.connection, cursor) as begin:
            cursor.execute(
                begin + sql, params + probe_params + (ride.params if ride is not None else [])
            )
        if begin:
            cursor.nextset()  # past the BEGIN's result
        written = int(max(cursor.rowcount, 0))
        edges = None
        if probe_sql:
            cursor.nextset()
            edges = list(cursor.fetchall())
        if ride is not None:
            cursor.nextset()
            ride.rows = list(cursor.fetchall())
        return written, edges

    def insert_tasks(
        self, broker: DatabaseStore, tasks: Sequence[NewTask], queues: Sequence[str]
    ) -> None:
        """One ``INSERT`` of READY rows, with the ``pg_notify`` of ``queues`` in the same
        statement (a data-modifying WITH runs whether or not the main query reads it)."""
        if not tasks and not queues:
            return
        if len(tasks) > 1:
            self._insert_arrays(broker, tasks, queues)
            return
        insert, params = self.values_insert(broker, tasks)
        with broker.connection.cursor() as cursor:
            if queues:
                payload = f"{broker.backend_alias}:{','.join(queues)}"
                cursor.execute(
                    f"WITH stored AS ({insert}) SELECT pg_notify(%s, %s)"
                    if insert
                    else "SELECT pg_notify(%s, %s)",
                    [*params, NOTIFY_CHANNEL, payload],
                )
            elif insert:
                cursor.execute(insert, params)

    def _insert_arrays(
        self, broker: DatabaseStore, tasks: Sequence[NewTask], queues: Sequence[str]
    ) -> None:
        """Several rows: one column array per parameter (``unnest``), so the statement's text is
        the same for any number of rows (a 500-row VALUES list cost more to bind than to run;
        one row is faster as VALUES: the unnest plan costs ~0.3 ms), and the ``pg_notify`` in
        the same statement.

        A column whose value is the same in every row (the task, queue, options… of an
        ``enqueue_many``) is one parameter instead of an array: psycopg writes each array
        element in Python, which was most of a bulk insert's time.
        """
        columns = list(zip(*map(row_values, tasks), strict=True))
        select: dict[str, str] = {}
        scalars: list[Any] = []
        arrays: list[list[Any]] = []
        unnested: list[str] = []
        for (name, kind), values in zip(UNNEST_COLUMNS, columns, strict=True):
            first = values[0]
            if name != "id" and values.count(first) == len(values):
                select[name] = f"%s::{kind}"
                scalars.append(first)
            else:
                select[name] = f"u.{name}"
                arrays.append(list(values))
                unnested.append(name)
        for name in ("args", "kwargs", "trace_context"):
            select[name] += "::jsonb"
        select |= {"status": "'READY'", "errors": "'[]'::jsonb", "worker_ids": "'[]'::jsonb"}
        select["worker_id"] = "''"
        insert = (
            f"INSERT INTO {TABLE} ({', '.join(INSERT_COLUMNS)}) "
            f"SELECT {', '.join(select[name] for name in INSERT_COLUMNS)} FROM unnest("
            + ", ".join(f"%s::{dict(UNNEST_COLUMNS)[name]}[]" for name in unnested)
            + f") AS u({', '.join(unnested)})"
        )
        with broker.connection.cursor() as cursor:
            if queues:
                payload = f"{broker.backend_alias}:{','.join(queues)}"
                cursor.execute(
                    f"WITH stored AS ({insert}) SELECT pg_notify(%s, %s)",
                    [*scalars, *arrays, NOTIFY_CHANNEL, payload],
                )
            else:
                cursor.execute(insert, [*scalars, *arrays])

    def insert_rows(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        rows: list[list[Any]],
        pg_types: Sequence[str] = (),
    ) -> None:
        if not (pg_types and rows):
            super().insert_rows(cursor, table, columns, rows, pg_types)
            return
        # One statement whatever the number of rows: one array per column (``unnest``). Each
        # column as ONE array literal: uuids, integers and booleans need no quoting, and one
        # text parameter binds far faster than 10,000 values adapted one by one.
        arrays = [
            "{" + ",".join(_pg_element(value) for value in column) + "}"
            for column in zip(*rows, strict=True)
        ]
        unnest = ", ".join(f"%s::{kind}[]" for kind in pg_types)
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({unnest})",
            arrays,
        )


__all__ = ["PostgreSQLDialect"]

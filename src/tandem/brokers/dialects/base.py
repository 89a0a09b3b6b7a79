"""What the database broker's SQL says differently on each store: one ``Dialect`` subclass per
database (``sqlite``, ``postgresql``, ``mysql`` for MariaDB/MySQL), picked once from the
connection's vendor (``dialect_for``). The broker holds the queue semantics; a dialect only
spells a statement, or runs the few a store needs in its own way (a claim without ``UPDATE …
RETURNING``, a several-row insert of column arrays, a ``LISTEN``).

The base class spells what two stores or more share; each subclass overrides the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import transaction

from tandem.brokers.database_rows import INSERT_BATCH, INSERT_COLUMNS, TABLE, row_values

if TYPE_CHECKING:
    from datetime import datetime

    from django.db.backends.base.base import BaseDatabaseWrapper

    from tandem.brokers.base import NewTask, Settlement
    from tandem.brokers.database_store import DatabaseStore, Ride
    from tandem.brokers.listeners import Listener

#: Rows per INSERT of workflow edges and members.
ROWS_PER_STATEMENT = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class Pick:
    """Which READY rows a claim picks: of ``queues``, claimable at ``bound`` (a parameter),
    passing ``filters`` (SQL to AND in, with ``filter_params``), the first ``limit`` in
    ``order`` — (column, descending) pairs, the claim index's order."""

    queues: Sequence[str]
    bound: Any
    limit: int
    order: tuple[tuple[str, bool], ...]
    filters: str = ""
    filter_params: Sequence[Any] = ()
    #: The paused-queue table, where the pick leaves paused queues out itself: each queue is
    #: then a subquery, NULL when the queue is paused (a parameter of the plan, so the planner's
    #: estimates and its index-ordered scan stay those of the plain list).
    pause_table: str = ""

    @property
    def order_by(self) -> str:
        return ", ".join(
            f"{column} DESC" if descending else column for column, descending in self.order
        )

    def statement(
        self, backend_alias: str, *, literal_limit: bool = False
    ) -> tuple[str, list[Any]]:
        """The pick as one ``SELECT id …`` (and its parameters), for a subquery;
        ``literal_limit``: the limit written into the statement, not a parameter."""
        queues: list[Any] = list(self.queues)
        mark = "%s"
        if self.pause_table:
            mark = (
                f"(SELECT %s WHERE NOT EXISTS (SELECT 1 FROM {self.pause_table} p "
                "WHERE p.backend = %s AND p.queue_name = %s))"
            )
            queues = [value for q in self.queues for value in (q, backend_alias, q)]
        marks = ", ".join([mark] * len(self.queues))
        params = [backend_alias, *queues, self.bound, *self.filter_params]
        if literal_limit:
            limit = str(int(self.limit))
        else:
            limit = "%s"
            params.append(self.limit)
        return (
            f"SELECT id FROM {TABLE} WHERE status = 'READY' AND backend = %s "
            f"AND queue_name IN ({marks}) AND available_at <= %s{self.filters} "
            f"ORDER BY {self.order_by} LIMIT {limit}",
            params,
        )


class Dialect:
    """The SQL of one store. Instances hold no state: one per vendor serves every broker."""

    vendor: str
    #: The store's current time when leases are on its clock (``DatabaseBroker._server_now``).
    server_now: str | None = None
    #: The store's current time when a statement runs (rate windows: ``database_rates``).
    clock_now: str | None = None
    #: A JSON value's parameter in a statement.
    json_placeholder = "%s"
    #: Why the store's driver cannot serve a task in a subinterpreter (None: it can).
    subinterpreter_blocker: str | None = None
    #: Row locks for a pick (a claim's, a recovery's) that skips the rows others hold.
    skip_locked = " FOR UPDATE SKIP LOCKED"
    #: Row lock of a rate window (``database_rates.RateGate.lock``).
    for_update = " FOR UPDATE"
    #: True: a claim reads first (no lock) and takes the write lock only when there is work.
    probe_before_claim = False
    #: Tasks per ``insert_tasks`` call when a workflow is pushed.
    workflow_insert_batch = INSERT_BATCH
    #: A claim's pick has its ``LIMIT`` written into the statement, not as a parameter
    #: (``Pick.statement``).
    literal_limit = False

    # -- transactions and connections ----------------------------------------------------------

    def write_transaction(self, connection: BaseDatabaseWrapper) -> AbstractContextManager[None]:
        """A write transaction outside any other (``database_store.write_transaction``)."""
        return transaction.atomic(using=connection.alias)

    def is_deadlock(self, exc: BaseException) -> bool:
        """``exc`` is the store's "deadlock: the whole transaction was rolled back" — it wrote
        nothing, so running it again is safe (``database_store.retrying_deadlocks``)."""
        return False

    def prepare(self, connection: BaseDatabaseWrapper) -> None:
        """Once before a worker starts (``Broker.prepare``)."""

    def worker_synchronous(self, connection: BaseDatabaseWrapper, mode: str) -> None:
        """Before a supervisor's write (``DatabaseBroker.transaction``)."""

    def setup_warnings(
        self, alias: str, database: str, connection: BaseDatabaseWrapper
    ) -> list[tuple[str, str]]:
        return []

    def listener(
        self, broker: DatabaseStore, on_wake: Callable[[list[str]], None]
    ) -> Listener | None:
        """None: the supervisor polls."""
        return None

    def notify(self, connection: BaseDatabaseWrapper, channel: str, payload: str) -> None:
        """Tell listening supervisors (``DatabaseBroker.notify``); nothing where none listen."""

    def cursor(self, connection: BaseDatabaseWrapper) -> Any:
        """A cursor for the statements a worker runs per task (claims, settles, the paused
        queues): Django's, on stores where its wrapper costs little next to the statement."""
        return connection.cursor()

    def datetime_param(self, connection: BaseDatabaseWrapper, value: datetime | None) -> Any:
        """``value`` as a statement's parameter (``DatabaseStore._dt_param``)."""
        return connection.ops.adapt_datetimefield_value(value)

    def probe_first(self, connection: BaseDatabaseWrapper, rate_limit: str | None) -> bool:
        """Whether a claim reads first (no lock) and takes the write lock only when there is
        work (``probe_before_claim``); ``rate_limit``: the claiming pool's."""
        return self.probe_before_claim

    # -- spelling ------------------------------------------------------------------------------

    def add_microseconds(self, sql: str) -> str:
        """SQL for ``sql`` (a time) plus the next ``%s`` microseconds."""
        return f"{sql} + INTERVAL %s MICROSECOND"

    def json_text(self, column: str) -> str:
        """``column`` (JSON) read as text."""
        return column

    def append_json(self, column: str) -> str:
        """SQL that appends one JSON value (the next ``%s``, JSON text) to an array column."""
        raise NotImplementedError

    def row_lock(self, *, share: bool = False, of: str = "") -> str:
        """The row lock to end a ``SELECT`` with (``of``: only that table's rows)."""
        raise NotImplementedError

    def insert_ignore(self, into: str) -> str:
        """``INSERT INTO {into}`` that inserts nothing where a unique key already holds the row
        (and waits for a concurrent insert of the same key to commit)."""
        return f"INSERT INTO {into} ON CONFLICT DO NOTHING"

    def insert_ignore_locking(self, into: str) -> str:
        """``insert_ignore``, leaving an existing row locked exclusively, not shared."""
        return self.insert_ignore(into)

    # -- statements ----------------------------------------------------------------------------

    def update_returning(
        self,
        cursor: Any,
        update: str,
        params: Sequence[Any],
        returning: str,
        reselect: str,
        reselect_params: Sequence[Any],
    ) -> None:
        """Run ``update`` and leave the ``returning`` columns of the rows it changed to fetch
        (``reselect``: a ``SELECT`` of those rows, where the store cannot return them)."""
        cursor.execute(f"{update} RETURNING {returning}", params)

    def settle_rows(
        self,
        broker: DatabaseStore,
        cursor: Any,
        settlements: Sequence[Settlement],
        probe: tuple[str, list[Any]] | None,
        ride: Ride | None = None,
    ) -> tuple[int, list[Any] | None]:
        """Write the endings, each guarded by its attempt (worker id, attempt token, RUNNING):
        one ``executemany`` per kind of ending. (How many rows took theirs, the rows of
        ``probe`` — a read to run after the write, where the store sends both at once — or
        None: not run, the caller runs it.) ``ride``: a claim to send after them in the same
        message where the store can (its ``rows`` set then; ``rides_settle``), else left to
        the claim."""
        guard = "WHERE id = %s AND worker_id = %s AND attempt_token = %s AND status = 'RUNNING'"
        release_lease = "worker_id = '', lease_expires_at = NULL, cancel_requested_at = NULL"
        free_key = "unique_key = NULL"
        finished_plain: list[list[Any]] = []
        finished_error: list[list[Any]] = []
        retried: list[list[Any]] = []
        for s in settlements:
            key = [broker._id_param(s.id), s.worker_id, s.attempt_token]
            if s.status == "READY":
                assert s.error is not None and s.retry_at is not None
                retried.append(
                    [broker._json_param(s.error.as_json()), broker._dt_param(s.retry_at), *key]
                )
            elif s.error is None:
                finished_plain.append(
                    [
                        s.status,
                        broker._json_param(s.return_value),
                        broker._dt_param(s.finished_at),
                        *key,
                    ]
                )
            else:
                finished_error.append(
                    [
                        s.status,
                        broker._json_param(s.error.as_json()),
                        broker._dt_param(s.finished_at),
                        *key,
                    ]
                )
        written = 0
        append_errors = self.append_json("errors")
        if finished_plain:
            cursor.executemany(
                f"UPDATE {TABLE} SET status = %s, return_value = {self.json_placeholder}, "
                f"finished_at = %s, {free_key}, {release_lease} {guard}",
                finished_plain,
            )
            written += max(cursor.rowcount, 0)
        if finished_error:
            cursor.executemany(
                f"UPDATE {TABLE} SET status = %s, errors = {append_errors}, "
                f"finished_at = %s, {free_key}, {release_lease} {guard}",
                finished_error,
            )
            written += max(cursor.rowcount, 0)
        if retried:
            cursor.executemany(
                f"UPDATE {TABLE} SET status = 'READY', errors = {append_errors}, "
                f"available_at = %s, {release_lease} {guard}",
                retried,
            )
            written += max(cursor.rowcount, 0)
        return written, None

    def any_id(
        self, broker: DatabaseStore, column: str, ids: Sequence[str]
    ) -> tuple[str, list[Any]] | None:
        """SQL for ``column`` among the task ids ``ids`` with them as ONE parameter, and that
        parameter, where the store takes an array (one statement text whatever their number,
        no parameter per id to adapt); None: the caller writes an ``IN`` list."""
        return None

    def claim_rows(
        self,
        broker: DatabaseStore,
        cursor: Any,
        pick: Pick,
        set_clause: str,
        set_params: list[Any],
        worker_id: str,
        now: datetime,
    ) -> list[Any]:
        """Pick rows and ``SET`` them in one statement; the rows changed (``COLUMNS``)."""
        cursor.execute(*self.claim_statement(broker, pick, set_clause, set_params))
        return list(cursor.fetchall())

    def claim_statement(
        self, broker: DatabaseStore, pick: Pick, set_clause: str, set_params: list[Any]
    ) -> tuple[str, list[Any]]:
        """``claim_rows``' statement, ``UPDATE … RETURNING``, and its parameters."""
        sql, params = pick.statement(broker.backend_alias, literal_limit=self.literal_limit)
        return (
            f"UPDATE {TABLE} SET {set_clause} WHERE id IN ({sql}{self.skip_locked}) "
            f"RETURNING {broker._select_columns()}",
            [*set_params, *params],
        )

    def update_claimed(
        self,
        broker: DatabaseStore,
        cursor: Any,
        ids: list[Any],
        set_clause: str,
        set_params: list[Any],
        worker_id: str,
        now: datetime,
    ) -> tuple[list[Any], list[Any]]:
        """``SET`` the rows ``ids`` (locked by this transaction); (the ids changed, their rows)."""
        cursor.execute(
            f"UPDATE {TABLE} SET {set_clause} WHERE id IN ({broker._placeholders(len(ids))}) "
            f"RETURNING {broker._select_columns()}",
            [*set_params, *ids],
        )
        return ids, list(cursor.fetchall())

    def values_insert(
        self, broker: DatabaseStore, tasks: Sequence[NewTask]
    ) -> tuple[str, list[Any]]:
        """One ``INSERT … VALUES`` of READY rows (and its parameters); "" for no task."""
        j = self.json_placeholder
        row = (
            f"(%s, %s, %s, %s, %s, %s, 'READY', {j}, {j}, %s, %s, %s, {j}, {j}, %s, '', %s, {j}, "
            "%s, %s, %s, %s)"
        )
        params: list[Any] = []
        connection = broker.connection  # looked up once: a per-value lookup cost ~10 % of a batch
        adapt = connection.ops.adapt_datetimefield_value
        native_uuid = connection.features.has_native_uuid_field
        for t in tasks:
            (task_id, *text, run_after, available_at, enqueued_at, max_attempts, timeout, trace) = (
                row_values(t)[:-4]
            )
            enqueued = adapt(enqueued_at)
            params += [
                task_id if native_uuid else task_id.hex,
                *text,
                adapt(run_after),
                enqueued if run_after is None else adapt(available_at),  # due when enqueued
                enqueued,
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
        return insert, params

    def insert_tasks(
        self, broker: DatabaseStore, tasks: Sequence[NewTask], queues: Sequence[str]
    ) -> None:
        """One ``INSERT`` of READY rows (raw SQL: the ORM's per-row work cost more than SQLite's
        commit); where the store can, it also notifies ``queues``, delivered at commit."""
        if not tasks:
            return
        insert, params = self.values_insert(broker, tasks)
        with broker.connection.cursor() as cursor:
            cursor.execute(insert, params)

    def insert_rows(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        rows: list[list[Any]],
        pg_types: Sequence[str] = (),
    ) -> None:
        """Insert ``rows`` into ``table`` (``pg_types``: each column's type, where arrays of
        them make one statement of any number of rows)."""
        row = f"({', '.join(['%s'] * len(columns))})"
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                + ", ".join([row] * len(chunk)),
                [value for values in chunk for value in values],
            )

    # -- a claim of one statement (PostgreSQL: ``database_claims``) -----------------------------

    #: True: a claim needing one statement commits it on its own when it may (``own_commit``),
    #: and the supervisor's round opens a ``database_store.RoundTransaction`` to allow it.
    claims_alone = False

    #: True: a claim's pick leaves paused queues out itself (``Pick.pause_table``); False: the
    #: claim reads them first (``database_pauses.unpaused``).
    pauses_in_pick = False

    #: True: ``settle_rows`` sends a round's claim (``database_store.Ride``) in its own message
    #: (``database_claims.DatabaseClaims.claim_ahead``).
    rides_settle = False

    def own_commit(self, connection: BaseDatabaseWrapper) -> AbstractContextManager[bool]:
        """True: each statement in the block commits on its own (autocommit), where the
        connection allows it now — the caller checked that the transaction open, if any, is one
        it may leave (``database_store.may_commit_alone``). False: nothing changed."""
        return nullcontext(False)


__all__ = ["ROWS_PER_STATEMENT", "Dialect", "Pick"]

"""The database broker's plumbing, shared by its parts (``DatabaseBroker`` and its mixins):
the connection of the calling thread, the store's SQL dialect, parameters and row reading."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from tandem.brokers import stuck_connections
from tandem.brokers.database_rows import COLUMNS, JSON_COLUMNS, NOTIFY_CHANNEL, row_to_task
from tandem.brokers.dialects import Dialect, dialect_for
from tandem.models import TaskRecord

if TYPE_CHECKING:
    from tandem.brokers.base import NewTask, StoredTask

logger = logging.getLogger(__name__)

#: Runs of a write transaction that a deadlock rolled back (``retrying_deadlocks``), and the
#: most one waits before the next run (jittered: the two victims do not meet again at once).
DEADLOCK_TRIES = 3
DEADLOCK_PAUSE = 0.05


def write_transaction(connection: BaseDatabaseWrapper) -> AbstractContextManager[None]:
    """A write transaction; on SQLite one that takes the write lock up front (``BEGIN
    IMMEDIATE``: ``dialects.sqlite``). Inside the caller's transaction (or the supervisor's
    round): that transaction, with no savepoint round trips."""
    if connection.in_atomic_block:
        return transaction.atomic(using=connection.alias, savepoint=False)
    return dialect_for(connection.vendor).write_transaction(connection)


class RoundTransaction(transaction.Atomic):
    """The write transaction of a supervisor's round (``DatabaseBroker.transaction``), where the
    store commits statements on their own (``Dialect.own_commit``: PostgreSQL): a claim that is
    the round's first statement and needs one statement commits it alone, with no ``BEGIN`` and
    ``COMMIT`` round trips (``may_commit_alone``). A user's ``atomic`` block is never one.

    The round's caller hands its claims to the pools only once the round ended without an
    error. A round that fails after a claim committed alone (another pool's claim failing)
    gives those attempts back (``Broker.release``), as its rollback would have: their tasks are
    READY again at once instead of waiting for their leases to expire. Where the store cannot
    be reached, their leases expire and recovery puts them back."""

    def __init__(self, store: DatabaseStore) -> None:
        super().__init__(store.connection.alias, savepoint=True, durable=False)
        self.store = store
        #: (worker id, {task id: attempt token}, the claim's now) of each claim committed alone.
        self.claimed_alone: list[tuple[str, dict[str, str], datetime]] = []
        #: The claim announced to ride in the round's settle message (``Ride``), if any.
        self.ride: Ride | None = None

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        ride, self.ride = self.ride, None
        stranded = None
        if exc_type is None and ride is not None and ride.rows is not None and not ride.taken:
            # A claim that rode and was never taken would leave its rows RUNNING with nobody to
            # run them (till their leases ran out): the round is rolled back instead.
            stranded = RuntimeError("a claim rode in the round's settle and was never taken")
            exc_type, exc_value = RuntimeError, stranded
        try:
            super().__exit__(exc_type, exc_value, traceback)
        finally:
            if exc_type is not None:
                self._give_back()
        if stranded is not None:
            raise stranded

    def _give_back(self) -> None:
        claimed, self.claimed_alone = self.claimed_alone, []
        for worker_id, attempts, now in claimed:
            try:
                self.store.release(worker_id, attempts, now)
            except Exception as exc:  # the store is down: the leases expire and are recovered
                logger.warning(
                    "a failed round could not give back %d claimed task(s) (%s); they are "
                    "recovered when their leases expire",
                    len(attempts),
                    exc,
                )


@dataclass(eq=False)
class Ride:
    """A claim sent in the same message as the round's settle (``DatabaseClaims.claim_ahead``):
    the settle's message carries its statement (``Dialect.settle_rows``), and the round's claim
    with the same ``key`` takes its ``rows`` instead of sending it — one round trip less.
    ``token``, ``set_clause`` and ``set_params`` are the claim's (attempt token, ``SET``)."""

    key: tuple[Any, ...]
    token: str
    set_clause: str
    set_params: list[Any]
    sql: str
    params: list[Any]
    #: The rows the statement returned, once the settle's message ran it.
    rows: list[Any] | None = None
    taken: bool = False


def round_ride(connection: BaseDatabaseWrapper) -> Ride | None:
    """The claim announced to ride in the settle of the round open on ``connection``."""
    blocks = connection.atomic_blocks
    if len(blocks) == 1 and isinstance(blocks[0], RoundTransaction):
        return blocks[0].ride
    return None


def round_transaction(store: DatabaseStore) -> AbstractContextManager[None]:
    """``write_transaction``, as the supervisor's round opens it (``RoundTransaction``)."""
    connection = store.connection
    if (
        connection.in_atomic_block
        or not store.dialect.claims_alone
        or not connection.get_autocommit()
    ):
        return write_transaction(connection)
    return RoundTransaction(store)


def committed_alone(
    connection: BaseDatabaseWrapper, worker_id: str, tasks: Sequence[StoredTask], now: datetime
) -> None:
    """Note the attempts a claim just committed alone in the round (``RoundTransaction``)."""
    blocks = connection.atomic_blocks
    if tasks and blocks and isinstance(blocks[0], RoundTransaction):
        attempts = {t.id: t.attempt_token for t in tasks}
        blocks[0].claimed_alone.append((worker_id, attempts, now))


def may_commit_alone(connection: BaseDatabaseWrapper) -> bool:
    """A statement run now may commit on its own: the connection is in autocommit mode, or in a
    round's transaction (``RoundTransaction``) not nested in any other. (Whether the round has
    sent anything yet is the dialect's to check: ``Dialect.own_commit``.)"""
    if not connection.in_atomic_block:
        return connection.get_autocommit()
    blocks = connection.atomic_blocks
    return (
        len(blocks) == 1
        and isinstance(blocks[0], RoundTransaction)
        and connection.commit_on_exit
        and not connection.needs_rollback
    )


def retrying_deadlocks[T](store: DatabaseStore, what: str, body: Callable[[], T]) -> T:
    """``body()`` in a write transaction (``write_transaction``), run again (at most
    ``DEADLOCK_TRIES`` runs in all) when the store rolled it back as a deadlock's victim
    (``Dialect.is_deadlock``: MariaDB/MySQL). Never when the transaction is the caller's (the
    deadlock rolled back more than ``body``: the caller decides) or when the error came from the
    commit (the transaction may have committed)."""
    connection = store.connection
    owned = not connection.in_atomic_block
    for run in range(1, DEADLOCK_TRIES + 1):
        committing = False
        try:
            with write_transaction(connection):
                result = body()
                committing = True
            return result
        except Exception as exc:
            if committing or not owned or run == DEADLOCK_TRIES:
                raise
            if not store.dialect.is_deadlock(exc):
                raise
            pause = random.uniform(0.5, 1.0) * DEADLOCK_PAUSE * run
            logger.debug("%s lost a deadlock (%s); run %d again in %.3fs", what, exc, run, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


class DatabaseStore:
    """What every part of the database broker uses."""

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
        self._dialect: Dialect | None = None
        #: Pool key -> until when its claims run in a transaction (``database_claims``).
        self._claims_held: dict[str, float] = {}
        self._columns_sql: str | None = None

    if TYPE_CHECKING:  # provided by the other parts of DatabaseBroker

        def push(self, tasks: Sequence[NewTask]) -> list[str]:
            raise NotImplementedError

        def _edges_probe(self, parent_ids: Sequence[str]) -> tuple[str, list[Any]]:
            raise NotImplementedError

        def _parents_finished(
            self,
            cursor: Any,
            task_ids: Sequence[str],
            now: datetime,
            *,
            edges: list[tuple[Any, Any, Any]] | None = None,
        ) -> Any:
            raise NotImplementedError

        def release(self, worker_id: str, attempts: Mapping[str, str], now: datetime) -> int:
            raise NotImplementedError

    @property
    def database(self) -> str:
        return self._database or router.db_for_write(TaskRecord) or "default"

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.database]

    @property
    def dialect(self) -> Dialect:
        """The store's SQL, picked once from its connection's vendor."""
        if self._dialect is None:
            self._dialect = dialect_for(self.connection.vendor)
        return self._dialect

    def connection_cutter(self) -> Callable[[], bool]:
        return stuck_connections.cutter(self.connection)  # this thread's connection

    def _id_param(self, task_id: str) -> Any:
        value = uuid.UUID(task_id)
        if self.connection.features.has_native_uuid_field:
            return value
        return value.hex

    def _dt_param(self, value: datetime | None) -> Any:
        return self.dialect.datetime_param(self.connection, value)

    def _server_now(self) -> str | None:
        """SQL for the database server's current time, when leases are on the store's clock.

        PostgreSQL's ``now()`` is the transaction's start: never later than the moment the
        statement runs, so a lease it grants ends no later than the worker's own deadline for it.
        MariaDB's ``UTC_TIMESTAMP(6)`` is UTC whatever the session's time zone (the column holds
        UTC, as Django writes it). None on SQLite, or when the caller's clock is the lease clock.
        """
        if not self.store_clock:
            return None
        return self.dialect.server_now

    def _lease_sql(self, lease_until: datetime, now: datetime) -> tuple[str, list[Any]]:
        """SQL (and its parameter) for a lease ending ``lease_until - now`` from the store's now."""
        server_now = self._server_now()
        if server_now is None:
            return "%s", [self._dt_param(lease_until)]
        micros = (lease_until - now) // timedelta(microseconds=1)
        return self.dialect.add_microseconds(server_now), [micros]

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
        """``COLUMNS`` as a select list (JSON as text), built once per store (each claim's)."""
        if self._columns_sql is None:
            json_text = self.dialect.json_text
            self._columns_sql = ", ".join(json_text(c) if c in JSON_COLUMNS else c for c in COLUMNS)
        return self._columns_sql

    def _row_to_task(self, row: Sequence[Any]) -> StoredTask:
        return row_to_task(row)

    def _append_json(self, column: str) -> str:
        """SQL that appends one JSON value (the next ``%s``, JSON text) to an array column."""
        return self.dialect.append_json(column)

    def _json_literal(self) -> str:
        return self.dialect.json_placeholder

    def _insert(self, tasks: Sequence[NewTask], queues: Sequence[str]) -> None:
        """One ``INSERT`` of READY rows; on PostgreSQL it also notifies ``queues``, delivered at
        commit."""
        self.dialect.insert_tasks(self, tasks, queues)

    def notify(self, queues: Sequence[str]) -> None:
        """PostgreSQL: tell listening supervisors (delivered when the caller's transaction commits).

        The payload is ``"<backend alias>:<queue>,<queue>…"``.
        """
        self.dialect.notify(
            self.connection, NOTIFY_CHANNEL, f"{self.backend_alias}:{','.join(queues)}"
        )


__all__ = [
    "DEADLOCK_TRIES",
    "DatabaseStore",
    "Ride",
    "RoundTransaction",
    "committed_alone",
    "may_commit_alone",
    "retrying_deadlocks",
    "round_ride",
    "round_transaction",
    "write_transaction",
]

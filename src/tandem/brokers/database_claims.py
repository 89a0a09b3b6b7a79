"""The claim on the database store: READY tasks to RUNNING, in one write transaction.

- PostgreSQL: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING …``, whose
  queue list leaves paused queues out itself (``Pick.pause_table``). That statement is atomic
  on its own: a claim that picked no task with a concurrency key or a rate limit commits it
  alone (autocommit) — one round trip where ``BEGIN``, the paused-queue read, the claim and
  ``COMMIT`` were four — in autocommit and as the first statement of the supervisor's round
  (``database_store.RoundTransaction``), never in a transaction of the caller's;
- SQLite (WAL): ``BEGIN IMMEDIATE`` + the same ``UPDATE … RETURNING`` — one short write
  transaction that waits on the busy timeout instead of failing with "database is locked";
- MariaDB/MySQL (no ``UPDATE … RETURNING``): ``SELECT … FOR UPDATE SKIP LOCKED``, ``UPDATE``
  and ``SELECT`` in one transaction.

How each store spells it is its dialect's (``brokers/dialects/``); rows with a concurrency key
or a rate limit are claimed once they hold a slot (``database_concurrency``) and their rate
admits them (``database_rates``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tandem import rates
from tandem.brokers import (
    database_concurrency,
    database_pauses,
    database_rates,
    database_starvation,
)
from tandem.brokers.base import StoredTask, new_attempt_token
from tandem.brokers.database_rows import TABLE
from tandem.brokers.database_store import (
    DatabaseStore,
    Ride,
    RoundTransaction,
    committed_alone,
    may_commit_alone,
    retrying_deadlocks,
    round_ride,
)
from tandem.brokers.dialects import Pick

#: The claim index's order: priority first, then the oldest.
CLAIM_ORDER = (("priority", True), ("available_at", False), ("enqueued_at", False))
#: Seconds a pool's claims run in a transaction after one picked a task with a concurrency key
#: or a rate limit (``DatabaseClaims._may_claim_alone``).
HELD_PAUSE = 10.0


def claim_order(task: StoredTask) -> tuple[int, datetime, datetime]:
    """``CLAIM_ORDER`` as a sort key."""
    return (-task.priority, task.available_at, task.enqueued_at)


class DatabaseClaims(DatabaseStore):
    """Mixed into ``DatabaseBroker``."""

    def _claimable_where(self, queues: Sequence[str]) -> str:
        return (
            "status = 'READY' AND backend = %s "
            f"AND queue_name IN ({self._placeholders(len(queues))})"
            " AND available_at <= %s" + database_concurrency.claimable_filter(TABLE)
        )

    def has_ready(self, queues: Sequence[str], now: datetime) -> bool:
        return self._has_ready(database_pauses.unpaused(self, queues), now)

    def _has_ready(self, queues: Sequence[str], now: datetime) -> bool:
        """``has_ready`` of queues known to be unpaused."""
        if not queues:
            return False
        with self.dialect.cursor(self.connection) as cursor:
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
        dialect = self.dialect
        if not dialect.pauses_in_pick:
            queues = database_pauses.unpaused(self, queues)  # paused queues start nothing
            if not queues:
                return []
        connection = self.connection
        ride = self._ridden(queues, limit, worker_id, lease_until, now, rate_limit)
        ridden = ride.rows if ride is not None else None
        if ride is None and (
            dialect.probe_first(connection, rate_limit) and not self._has_ready(queues, now)
        ):
            # A read needs no lock in WAL mode; only take the write lock when there is work.
            return []
        if ride is not None:
            token, set_clause, set_params = ride.token, ride.set_clause, ride.set_params
        else:
            token = new_attempt_token()
            set_clause, set_params = database_concurrency.claim_set(
                self, worker_id, token, lease_until, now, guarded=True
            )
        claimed: list[StoredTask] = []
        if ride is None and self._may_claim_alone(pool, rate_limit):
            alone = self._claim_alone(queues, limit, set_clause, set_params, worker_id, now)
            if alone is not None:
                claimed, held = alone
                if not held:
                    return claimed
                # Tasks with a concurrency key or a rate limit were picked (and left READY):
                # they are claimed in a transaction below, and so are this pool's next claims
                # for a while (a no-op write of such rows in each claim would cost more).
                self._claims_held[pool] = time.monotonic() + HELD_PAUSE
                limit -= len(claimed)

        def run() -> list[StoredTask]:
            with self.dialect.cursor(connection) as cursor:
                gate = database_rates.RateGate(self, cursor, now)
                capped = gate.cap(pool, rate_limit, limit)
                if capped <= 0:
                    return []
                # A round whose picked tasks were over their rate leaves free places: another
                # round fills them, skipping the task paths this claim found full (a few rounds).
                full: list[str] = []
                tasks: list[StoredTask] = []
                rows = ridden  # where the claim rode in the settle: its first round's rows
                for _ in range(database_rates.ROUNDS):
                    tasks += self._claim_round(
                        cursor, queues, capped - len(tasks), full, token, set_clause, set_params,
                        worker_id, lease_until, now, gate, rows,
                    )  # fmt: skip
                    rows = None
                    filled = [p for p in gate.full_paths() if p not in full]
                    if len(tasks) >= capped or not filled:
                        break
                    full = [*full, *filled]
                gate.record_pool(pool, rate_limit, len(tasks))
                gate.save()
            return tasks

        # A deadlock between keyed claims (MariaDB) rolled the claim back: it is run again.
        tasks = retrying_deadlocks(self, "a claim", run)
        return sorted(claimed + tasks, key=claim_order) if claimed else tasks

    def claim_ahead(
        self,
        queues: Sequence[str],
        limit: int,
        worker_id: str,
        lease_until: datetime,
        now: datetime,
        *,
        rate_limit: str | None = None,
    ) -> bool:
        """Announce the claim the supervisor's round makes after its settle (the same
        arguments as ``claim``), for the settle to send it in its own message
        (``Dialect.rides_settle``: PostgreSQL). The round's ``claim`` with these arguments then
        takes its rows: a round of settle and claim costs one round trip less. Whether it was
        announced: only in a round (``RoundTransaction``), never for a pool with a rate limit
        (its window is locked and read before its claim: ``RateGate.cap``)."""
        blocks = self.connection.atomic_blocks
        if (
            limit <= 0
            or not queues
            or rate_limit
            or not self.dialect.rides_settle
            or not self.dialect.pauses_in_pick
            or len(blocks) != 1
            or not isinstance(blocks[0], RoundTransaction)
        ):
            return False
        token = new_attempt_token()
        set_clause, set_params = database_concurrency.claim_set(
            self, worker_id, token, lease_until, now, guarded=True
        )
        pick = self._pick(queues, limit, (), now)
        sql, params = self.dialect.claim_statement(self, pick, set_clause, set_params)
        blocks[0].ride = Ride(
            key=(tuple(queues), limit, worker_id, lease_until, now),
            token=token,
            set_clause=set_clause,
            set_params=set_params,
            sql=sql,
            params=params,
        )
        return True

    def _ridden(
        self,
        queues: Sequence[str],
        limit: int,
        worker_id: str,
        lease_until: datetime,
        now: datetime,
        rate_limit: str | None,
    ) -> Ride | None:
        """The claim announced for this one (``claim_ahead``) that rode in the round's settle:
        taken now (the round rolls back if it never is: ``RoundTransaction``)."""
        ride = round_ride(self.connection)
        if ride is None or ride.rows is None or ride.taken or rate_limit:
            return None
        if ride.key != (tuple(queues), limit, worker_id, lease_until, now):
            return None
        ride.taken = True
        return ride

    def _may_claim_alone(self, pool: str, rate_limit: str | None) -> bool:
        """The claim may be one statement that commits on its own (``Dialect.claims_alone``):
        no pool rate to lock, no task with a key or a rate picked by this pool's claims lately,
        and the connection in autocommit or in the supervisor's round (never in a transaction of
        the caller's, which must be able to roll the claim back)."""
        return (
            self.dialect.claims_alone
            and not rate_limit
            and time.monotonic() >= self._claims_held.get(pool, 0.0)
            and may_commit_alone(self.connection)
        )

    def _claim_alone(
        self,
        queues: Sequence[str],
        limit: int,
        set_clause: str,
        set_params: list[Any],
        worker_id: str,
        now: datetime,
    ) -> tuple[list[StoredTask], bool] | None:
        """The guarded claim as ONE statement committing on its own: (the tasks it claimed,
        whether it picked tasks with a concurrency key or a rate limit — left READY, unlocked at
        its commit); None where the connection cannot commit it alone (a round that has sent
        statements already)."""
        connection = self.connection
        with self.dialect.own_commit(connection) as alone:
            if not alone:
                return None
            with connection.cursor() as cursor:
                pick = self._pick(queues, limit, (), now)
                rows = self.dialect.claim_rows(
                    self, cursor, pick, set_clause, set_params, worker_id, now
                )
        tasks = sorted((self._row_to_task(row) for row in rows), key=claim_order)
        claimed = [t for t in tasks if t.concurrency_key is None and not t.rate_limit]
        committed_alone(connection, worker_id, claimed, now)  # given back if the round fails
        return claimed, len(claimed) < len(tasks)

    def _pick(self, queues: Sequence[str], limit: int, full: Sequence[str], now: datetime) -> Pick:
        """The claim's pick of up to ``limit`` tasks of ``queues``, skipping the rate-limited
        tasks of full windows (``database_rates.claimable_filter``), of the ``full`` task paths
        and, where the statement reads them itself, of paused queues; in claim order."""
        rated, rated_params = database_rates.claimable_filter(self, TABLE, now)
        filters = (
            database_concurrency.claimable_filter(TABLE)
            + rated
            + database_rates.path_filter(TABLE, full)
        )
        return Pick(
            queues=queues,
            bound=self._dt_param(now),
            limit=limit,
            order=CLAIM_ORDER,
            filters=filters,
            filter_params=[*rated_params, *full],
            pause_table=database_pauses.PAUSE_TABLE if self.dialect.pauses_in_pick else "",
        )

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
        rows: list[Any] | None = None,
    ) -> list[StoredTask]:
        """One pick (``_pick``) and claim of up to ``limit`` tasks; in claim order. ``rows``:
        the claim's rows, where it rode in the round's settle (``claim_ahead``)."""
        if rows is None:
            pick = self._pick(queues, limit, full, now)
            rows = self.dialect.claim_rows(
                self, cursor, pick, set_clause, set_params, worker_id, now
            )
        tasks = sorted((self._row_to_task(row) for row in rows), key=claim_order)
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
        ids, rows = self.dialect.update_claimed(
            self, cursor, ids, set_clause, set_params, worker_id, now
        )
        if len(ids) < len(granted):  # a row MariaDB refused to update was failed instead
            moved = {str(uuid.UUID(str(i))) for i in ids}
            database_concurrency.free_slots(
                self, cursor, [(t.id, token) for t in granted if t.id not in moved]
            )
        if not ids:
            return claimed
        started = {t.id: t for t in (self._row_to_task(row) for row in rows)}
        gate.record(started.values())
        return [
            started.get(t.id, t)
            for t in tasks
            if (t.concurrency_key is None and not t.rate_limit) or t.id in started
        ]

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


__all__ = ["DatabaseClaims"]

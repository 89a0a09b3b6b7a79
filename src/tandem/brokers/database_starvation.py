"""The starvation claim on the database store: READY tasks due before a bound, oldest first.

Served by the claim index, ``tandem_claim_idx`` (status, backend, queue_name, -priority,
available_at, enqueued_at): a range on its first three columns, with ``available_at <=
starved_before`` checked inside the index (no table row is read for a task that does not
starve), the few starved ones sorted. No index of its own: one ordered by ``available_at``
alone made PostgreSQL's planner leave the claim index for the *usual* claim. The supervisor runs
it only now and then (``worker.supervisor.STARVATION_CHECKS``), so the usual claim stays one
index-ordered statement. It writes what ``claim`` writes (the same ``SET`` clause), so a starved
task's attempt is like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tandem import rates
from tandem.brokers import database_concurrency, database_pauses, database_rates
from tandem.brokers.base import StoredTask, new_attempt_token

if TYPE_CHECKING:
    from tandem.brokers.database import DatabaseBroker

ORDER = "ORDER BY available_at, enqueued_at"


def claim_starved(
    broker: DatabaseBroker,
    queues: Sequence[str],
    limit: int,
    worker_id: str,
    lease_until: datetime,
    now: datetime,
    starved_before: datetime,
    rate_limit: str | None = None,
) -> list[StoredTask]:
    from tandem.brokers.database import TABLE, write_transaction

    if limit <= 0 or not queues:
        return []
    pool = rates.pool_key(queues)
    queues = database_pauses.unpaused(broker, queues)
    if not queues:
        return []
    connection = broker.connection
    vendor = connection.vendor
    bound = broker._dt_param(min(starved_before, now))
    where = (
        "status = 'READY' AND backend = %s "
        f"AND queue_name IN ({broker._placeholders(len(queues))}) AND available_at <= %s"
        + database_concurrency.claimable_filter(TABLE)
    )
    where_params = [broker.backend_alias, *queues, bound]
    if vendor == "sqlite":
        # A read needs no lock in WAL mode; only take the write lock when a task starves.
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {TABLE} WHERE {where} LIMIT 1", where_params)
            if cursor.fetchone() is None:
                return []
    token = new_attempt_token()
    set_clause, set_params = database_concurrency.claim_set(
        broker, worker_id, token, lease_until, now, guarded=True
    )
    with write_transaction(connection), connection.cursor() as cursor:
        gate = database_rates.RateGate(broker, cursor, now)
        if rate_limit:  # the pool's rate caps the batch (its row stays locked till commit)
            limit = min(limit, gate.lock(pool, rate_limit).allowance(gate.now))
            if limit <= 0:
                gate.save()
                return []
        if vendor == "mysql":
            ids = _pick_mysql(broker, cursor, queues, limit, bound)
            if not ids:
                return []
            ids = broker._update_mysql(cursor, ids, set_clause, set_params, worker_id, now)
            if not ids:
                return []
            marks = broker._placeholders(len(ids))
            cursor.execute(
                f"SELECT {broker._select_columns()} FROM {TABLE} WHERE id IN ({marks})", ids
            )
        else:
            lock = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
            cursor.execute(
                f"UPDATE {TABLE} SET {set_clause} WHERE id IN "
                f"(SELECT id FROM {TABLE} WHERE {where} {ORDER} LIMIT %s{lock}) "
                f"RETURNING {broker._select_columns()}",
                [*set_params, *where_params, limit],
            )
        rows = cursor.fetchall()
        tasks = [broker._row_to_task(row) for row in rows]
        tasks.sort(key=lambda t: (t.available_at, t.enqueued_at))
        tasks = broker.claim_keyed(cursor, tasks, worker_id, token, lease_until, now, gate)
        if rate_limit:
            gate.windows[database_rates.limit_key(pool)].record(gate.now, len(tasks))
        gate.save()
    return tasks


def _pick_mysql(
    broker: DatabaseBroker, cursor: Any, queues: Sequence[str], limit: int, bound: Any
) -> list[Any]:
    """One locked, index-ordered branch per queue (see ``DatabaseBroker._pick_mysql``)."""
    from tandem.brokers.database import TABLE

    branch = (
        f"(SELECT id, available_at, enqueued_at FROM {TABLE} WHERE status = 'READY' "
        "AND backend = %s AND queue_name = %s AND available_at <= %s"
        f"{database_concurrency.claimable_filter(TABLE)} {ORDER} "
        "LIMIT %s FOR UPDATE SKIP LOCKED)"
    )
    params: list[Any] = []
    for queue in queues:
        params += [broker.backend_alias, queue, bound, limit]
    cursor.execute(" UNION ALL ".join([branch] * len(queues)), params)
    rows = sorted(cursor.fetchall(), key=lambda row: (row[1], row[2]))
    return [row[0] for row in rows[:limit]]


__all__ = ["claim_starved"]

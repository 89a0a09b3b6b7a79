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
from typing import TYPE_CHECKING

from tandem import rates
from tandem.brokers import database_concurrency, database_pauses, database_rates
from tandem.brokers.base import StoredTask, new_attempt_token
from tandem.brokers.database_rows import TABLE
from tandem.brokers.database_store import retrying_deadlocks
from tandem.brokers.dialects import Pick

if TYPE_CHECKING:
    from tandem.brokers.database_claims import DatabaseClaims

#: Oldest first (the claim index serves it within each queue).
ORDER = (("available_at", False), ("enqueued_at", False))


def claim_starved(
    broker: DatabaseClaims,
    queues: Sequence[str],
    limit: int,
    worker_id: str,
    lease_until: datetime,
    now: datetime,
    starved_before: datetime,
    rate_limit: str | None = None,
) -> list[StoredTask]:
    if limit <= 0 or not queues:
        return []
    pool = rates.pool_key(queues)
    dialect = broker.dialect
    if not dialect.pauses_in_pick:  # else the claim statement leaves them out itself
        queues = database_pauses.unpaused(broker, queues)
        if not queues:
            return []
    connection = broker.connection
    bound = broker._dt_param(min(starved_before, now))
    filters = database_concurrency.claimable_filter(TABLE)
    if dialect.probe_before_claim:
        # A read needs no lock in WAL mode; only take the write lock when a task starves.
        where = (
            "status = 'READY' AND backend = %s "
            f"AND queue_name IN ({broker._placeholders(len(queues))}) AND available_at <= %s"
            + filters
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {TABLE} WHERE {where} LIMIT 1",
                [broker.backend_alias, *queues, bound],
            )
            if cursor.fetchone() is None:
                return []
    token = new_attempt_token()
    set_clause, set_params = database_concurrency.claim_set(
        broker, worker_id, token, lease_until, now, guarded=True
    )

    def run() -> list[StoredTask]:
        with connection.cursor() as cursor:
            gate = database_rates.RateGate(broker, cursor, now)
            capped = gate.cap(pool, rate_limit, limit)
            if capped <= 0:
                return []
            pick = Pick(
                queues=queues,
                bound=bound,
                limit=capped,
                order=ORDER,
                filters=filters,
                pause_table=database_pauses.PAUSE_TABLE if dialect.pauses_in_pick else "",
            )
            rows = dialect.claim_rows(broker, cursor, pick, set_clause, set_params, worker_id, now)
            tasks = [broker._row_to_task(row) for row in rows]
            tasks.sort(key=lambda t: (t.available_at, t.enqueued_at))
            tasks = broker.claim_keyed(cursor, tasks, worker_id, token, lease_until, now, gate)
            gate.record_pool(pool, rate_limit, len(tasks))
            gate.save()
        return tasks

    return retrying_deadlocks(broker, "a starvation claim", run)


__all__ = ["claim_starved"]

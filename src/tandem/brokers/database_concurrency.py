"""Per-key concurrency limits on the database store: one ``ConcurrencySlot`` row per running
attempt of a task with a ``concurrency_key``.

- The claim's pick skips a ``"wait"`` task whose key already has ``concurrency_limit`` slot rows
  (``claimable_filter``: a hint that keeps full keys from clogging the head of the queue; it may
  be stale under concurrent claimers and is never what enforces the limit).
- The claim's ``UPDATE`` leaves keyed rows as they are (``claim_set(guarded=True)``): they come
  back READY, locked by the claim's transaction. ``take_slots`` then inserts a slot row for each,
  in the same transaction: slot numbers ``0 .. limit - 1`` under a unique constraint on
  ``(backend, concurrency_key, slot)``, so two claimers racing for the last slot take it once —
  the later ``INSERT … ON CONFLICT DO NOTHING`` (``INSERT IGNORE`` on MariaDB) waits for the
  earlier transaction and then inserts nothing. Rows that got a slot are claimed by a second
  ``UPDATE`` (only when keyed rows were picked); a ``"wait"`` row without one stays READY, a
  ``"discard"`` row ends FAILED with ``ConcurrencyLimited`` without running.
- A slot row names the attempt (task id, attempt token): the settle, release or recovery of that
  attempt deletes it (``free_slots``), and nothing else does — a stale attempt's late settle
  names an old token and frees nobody's slot. No lock is held while the task runs: a killed
  worker's slots are freed when its leases are recovered.
- Keys are taken in key order, so two claimers never wait on each other's slot inserts in
  opposite orders (no deadlock).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tandem.brokers.base import StoredTask, concurrency_limited_error
from tandem.brokers.database_rows import TABLE
from tandem.models import ConcurrencySlot

if TYPE_CHECKING:
    from tandem.brokers.database_store import DatabaseStore

SLOT_TABLE = ConcurrencySlot._meta.db_table


def claimable_filter(table: str) -> str:
    """SQL (no parameters) to AND into a claim's pick: a ``"wait"`` task whose key is full is not
    claimable (``table`` is the task table's name as the pick's FROM names it)."""
    return (
        f" AND ({table}.concurrency_key IS NULL OR {table}.on_limit = 'discard' OR "
        f"{table}.concurrency_limit > (SELECT COUNT(*) FROM {SLOT_TABLE} s "
        f"WHERE s.backend = {table}.backend AND s.concurrency_key = {table}.concurrency_key))"
    )


def claim_set(
    broker: DatabaseStore,
    worker_id: str,
    token: str,
    lease_until: datetime,
    now: datetime,
    *,
    guarded: bool,
) -> tuple[str, list[Any]]:
    """The claim's ``SET`` clause and its parameters; ``guarded``: rows with a concurrency key
    or a rate limit are left unchanged (they are claimed once they hold a slot and their rate
    admits them)."""
    lease_sql, lease_params = broker._lease_sql(lease_until, now)
    assignments = [
        ("status", "'RUNNING'", []),
        ("worker_id", "%s", [worker_id]),
        ("attempt_token", "%s", [token]),
        ("lease_expires_at", lease_sql, lease_params),
        ("started_at", "COALESCE(started_at, %s)", [broker._dt_param(now)]),
        ("last_attempted_at", "%s", [broker._dt_param(now)]),
        ("worker_ids", broker._append_json("worker_ids"), [json.dumps(worker_id)]),
    ]
    clauses, params = [], []
    for column, value, values in assignments:
        if guarded:
            value = (
                "CASE WHEN concurrency_key IS NULL AND rate_limit IS NULL "
                f"THEN {value} ELSE {column} END"
            )
        clauses.append(f"{column} = {value}")
        params += values
    return ", ".join(clauses), params


def take_slots(
    broker: DatabaseStore, cursor: Any, keyed: Sequence[StoredTask], token: str, now: datetime
) -> tuple[list[StoredTask], list[StoredTask]]:
    """Take a slot for each of ``keyed`` (picked, locked, READY; in claim order) for attempt
    ``token``; returns (those that hold one, the ``"discard"`` ones refused). Refused
    ``"wait"`` tasks are in neither list: they stay READY."""
    insert = broker.dialect.insert_ignore(
        f"{SLOT_TABLE} (backend, concurrency_key, slot, task_id, attempt_token, taken_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)"
    )
    by_key: dict[str, list[StoredTask]] = {}
    for task in keyed:
        by_key.setdefault(str(task.concurrency_key), []).append(task)
    granted: set[str] = set()
    refused: list[StoredTask] = []
    for key in sorted(by_key):
        cursor.execute(
            f"SELECT slot FROM {SLOT_TABLE} WHERE backend = %s AND concurrency_key = %s",
            [broker.backend_alias, key],
        )
        taken = {int(row[0]) for row in cursor.fetchall()}
        for task in by_key[key]:
            if _take_one(broker, cursor, insert, task, key, taken, token, now):
                granted.add(task.id)
            elif task.on_limit == "discard":
                refused.append(task)
    return [t for t in keyed if t.id in granted], refused


def _take_one(
    broker: DatabaseStore,
    cursor: Any,
    insert: str,
    task: StoredTask,
    key: str,
    taken: set[int],
    token: str,
    now: datetime,
) -> bool:
    for slot in range(max(int(task.concurrency_limit), 1)):
        if slot in taken:
            continue
        taken.add(slot)  # taken now, by this task or (the insert does nothing) by another claimer
        cursor.execute(
            insert,
            [
                broker.backend_alias,
                key,
                slot,
                broker._id_param(task.id),
                token,
                broker._dt_param(now),
            ],
        )
        if cursor.rowcount == 1:
            return True
    return False


def discard(
    broker: DatabaseStore, cursor: Any, refused: Sequence[StoredTask], now: datetime
) -> None:
    """End ``"discard"`` tasks whose key was full FAILED with ``ConcurrencyLimited``, unrun."""
    if not refused:
        return
    cursor.executemany(
        f"UPDATE {TABLE} SET status = 'FAILED', errors = {broker._append_json('errors')}, "
        "finished_at = %s, unique_key = NULL WHERE id = %s AND status = 'READY'",
        [
            [
                broker._json_param(concurrency_limited_error(task, now).as_json()),
                broker._dt_param(now),
                broker._id_param(task.id),
            ]
            for task in refused
        ],
    )
    broker._parents_finished(cursor, [task.id for task in refused], now)  # workflows


def free_slots(broker: DatabaseStore, cursor: Any, attempts: Iterable[tuple[str, str]]) -> None:
    """Delete the slots the attempts ``(task id, attempt token)`` held, after their ending was
    written in this transaction: a slot goes only with its own attempt, and only once that
    attempt is no longer RUNNING (an ending the guard refused — another worker's — frees
    nothing)."""
    attempts = list(attempts)
    if not attempts:
        return
    ids = [broker._id_param(task_id) for task_id, _ in attempts]
    keys = [v for (_, token), i in zip(attempts, ids, strict=True) for v in (i, token)]
    pairs = ", ".join(["(%s, %s)"] * len(attempts))
    # ``task_id IN (…)`` as well: MariaDB reads a row-constructor ``IN`` through no index, and
    # a DELETE that scans the table locks every slot of every key (settles then wait on each
    # other, and claims taking a slot deadlock with them).
    cursor.execute(
        f"DELETE FROM {SLOT_TABLE} WHERE task_id IN ({broker._placeholders(len(ids))}) "
        f"AND (task_id, attempt_token) IN ({pairs}) AND NOT EXISTS "
        f"(SELECT 1 FROM {TABLE} t WHERE t.id = {SLOT_TABLE}.task_id "
        f"AND t.attempt_token = {SLOT_TABLE}.attempt_token AND t.status = 'RUNNING')",
        [*ids, *keys],
    )


def held_slots(broker: DatabaseStore, key: str) -> int:
    """How many slots of ``key`` are held now (for tests and the status page)."""
    with broker.connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {SLOT_TABLE} WHERE backend = %s AND concurrency_key = %s",
            [broker.backend_alias, key],
        )
        return int(cursor.fetchone()[0])


__all__ = ["claim_set", "claimable_filter", "discard", "free_slots", "take_slots"]

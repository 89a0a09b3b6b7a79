"""Rate limits on the database store: one ``RateWindow`` row per (backend, limit key) holding the
start log of that key's sliding window, read and rewritten inside the claim's transaction.

- Limit keys: a task's rate counts the starts of its task path (the key is the path itself, which
  never holds a ``:``); a pool's ``rate_limit`` counts every start of its queues (the key is
  ``rates.pool_key``: ``pool:<queues>``).
- The claim locks the rows it needs (``SELECT … FOR UPDATE`` on PostgreSQL and MariaDB; SQLite's
  ``BEGIN IMMEDIATE`` write transaction already serializes every claimer), pool key first, then
  task keys in key order, so two claimers never wait on each other in opposite orders. A row is
  created on first use (``INSERT … ON CONFLICT DO NOTHING`` / ``ON DUPLICATE KEY UPDATE``).
- Times are on the store's clock (PostgreSQL ``clock_timestamp()``, MariaDB
  ``UTC_TIMESTAMP(6)``; the caller's ``now`` on SQLite or with ``store_clock=False``), as leases
  are, read once the window's lock is held. A start counts while it is younger than the window;
  older ones are pruned whenever the row is rewritten.
- The pool's allowance caps the claim's batch before the pick; a task over its own rate is
  left READY by the guarded claim (no attempt, no slot) and the rest of the batch goes on. The
  row's ``free_at`` (when the next start fits, for a full window) lets the pick skip a full task
  path (``claimable_filter``), and a claim whose batch had tasks over their rate picks again
  without their paths (``ROUNDS``), so waiting tasks never keep free workers idle; ``free_at``
  also feeds ``tandem status``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tandem import rates
from tandem.models import RateWindow

if TYPE_CHECKING:
    from tandem.brokers.base import StoredTask
    from tandem.brokers.database_store import DatabaseStore

RATE_TABLE = RateWindow._meta.db_table
MAX_KEY = 255
#: Claim rounds at most: a round whose tasks were over their rate is followed by one that skips
#: the paths now full, so waiting tasks never keep a free worker idle behind them.
ROUNDS = 3


def limit_key(key: str) -> str:
    """``key`` as stored: one longer than the column is shortened with a digest."""
    if len(key) <= MAX_KEY:
        return key
    return key[: MAX_KEY - 41] + "#" + hashlib.sha1(key.encode()).hexdigest()


def store_now(broker: DatabaseStore, cursor: Any, now: datetime) -> datetime:
    """Now on the store's clock (the lease clock), as an aware UTC datetime.

    Read when the claim first holds a window's lock: on PostgreSQL ``clock_timestamp()``, not
    the transaction's ``now()``, so a claim that waited for another's lock logs its starts after
    that claim's, never before them."""
    if broker._server_now() is None:
        return now
    cursor.execute(f"SELECT {broker.dialect.clock_now}")
    value = cursor.fetchone()[0]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value  # type: ignore[no-any-return]


class Window:
    """One locked row: its start log (epoch seconds) and rate."""

    def __init__(self, row_id: int, starts: list[float], rate: str) -> None:
        self.row_id, self.starts, self.rate = row_id, starts, rate
        self.count, self.window = rates.parse_rate(rate)
        self.changed = False

    def allowance(self, now: float) -> int:
        return rates.allowance(self.starts, self.count, self.window, now)

    def record(self, now: float, times: int) -> None:
        if times:
            self.starts.extend([now] * times)
            self.changed = True


class RateGate:
    """The rate windows one claim locked, and the starts it records."""

    def __init__(self, broker: DatabaseStore, cursor: Any, now: datetime) -> None:
        self.broker, self.cursor, self.caller_now = broker, cursor, now
        self._now: float | None = None
        self.windows: dict[str, Window] = {}

    @property
    def now(self) -> float:
        """The store's now (epoch seconds), read after the last window was locked."""
        if self._now is None:
            self._now = store_now(self.broker, self.cursor, self.caller_now).timestamp()
        return self._now

    def lock(self, key: str, rate: str) -> Window:
        """Lock (creating it if need be) the window of ``key``; ``rate`` as now declared."""
        key = limit_key(key)
        if key in self.windows:
            return self.windows[key]
        broker, cursor = self.broker, self.cursor
        dialect = broker.dialect
        select = (
            f"SELECT id, starts FROM {RATE_TABLE} WHERE backend = %s AND limit_key = %s"
            f"{dialect.for_update}"
        )
        cursor.execute(select, [broker.backend_alias, key])
        row = cursor.fetchone()
        if row is None:
            # First use. On MariaDB a duplicate under ``INSERT IGNORE`` takes a shared lock, and
            # two claimers upgrading theirs deadlock: the row is locked exclusively instead.
            cursor.execute(
                dialect.insert_ignore_locking(
                    f"{RATE_TABLE} (backend, limit_key, rate, starts, free_at) "
                    "VALUES (%s, %s, %s, '[]', NULL)"
                ),
                [broker.backend_alias, key, rate],
            )
            cursor.execute(select, [broker.backend_alias, key])
            row = cursor.fetchone()
        row_id, starts = row
        # Now is read again once the lock is held (store clock): every start this claim logs is
        # then later than the starts of the claims it waited for.
        self._now = None
        window = Window(int(row_id), [float(t) for t in json.loads(starts or "[]")], rate)
        window.changed = window.rate != rate
        window.starts = rates.prune(window.starts, window.window, self.now)
        self.windows[key] = window
        return window

    def cap(self, pool: str, rate_limit: str | None, limit: int) -> int:
        """``limit`` capped by the pool's ``rate_limit`` (its window stays locked till commit);
        at zero the gate is saved, for the claim ends there."""
        if not rate_limit:
            return limit
        limit = min(limit, self.lock(pool, rate_limit).allowance(self.now))
        if limit <= 0:
            self.save()
        return limit

    def record_pool(self, pool: str, rate_limit: str | None, started: int) -> None:
        """Log ``started`` starts against the pool's ``rate_limit`` (``cap`` locked it)."""
        if rate_limit:
            self.windows[limit_key(pool)].record(self.now, started)

    def admit(self, tasks: Sequence[StoredTask]) -> list[StoredTask]:
        """Those of ``tasks`` (in claim order) their own rate lets start now; keys in order."""
        by_path: dict[str, list[StoredTask]] = {}
        for task in tasks:
            if task.rate_limit:
                by_path.setdefault(task.task_path, []).append(task)
        admitted: set[str] = {t.id for t in tasks if not t.rate_limit}
        for path in sorted(by_path):
            group = by_path[path]
            window = self.lock(path, str(group[0].rate_limit))
            admitted.update(t.id for t in group[: window.allowance(self.now)])
        return [t for t in tasks if t.id in admitted]

    def record(self, started: Iterable[StoredTask]) -> None:
        """Log the starts of the claimed tasks against their own rates."""
        counts: dict[str, int] = {}
        for task in started:
            if task.rate_limit:
                counts[limit_key(task.task_path)] = counts.get(limit_key(task.task_path), 0) + 1
        for key, times in counts.items():
            self.windows[key].record(self.now, times)

    def full_paths(self) -> list[str]:
        """The task paths whose window this claim locked and found (or made) full."""
        return sorted(
            key
            for key, window in self.windows.items()
            if not key.startswith("pool:") and window.allowance(self.now) <= 0
        )

    def save(self) -> None:
        """Write back every window this claim changed (pruned, with its ``free_at``)."""
        for window in self.windows.values():
            if not window.changed:
                continue
            at = rates.free_at(window.starts, window.count, window.window)
            self.cursor.execute(
                f"UPDATE {RATE_TABLE} SET starts = %s, rate = %s, free_at = %s WHERE id = %s",
                [
                    json.dumps(window.starts),
                    window.rate,
                    None if at is None else self.broker._dt_param(datetime.fromtimestamp(at, UTC)),
                    window.row_id,
                ],
            )


def claimable_filter(broker: DatabaseStore, table: str, now: datetime) -> tuple[str, list[Any]]:
    """SQL (and its parameters) to AND into a claim's pick: a task with a ``rate_limit`` whose
    path's window is full now is not claimable. A hint that keeps waiting tasks from filling the
    head of the batch (the window row's ``free_at``, read without its lock); the locked window
    is what enforces the rate. Rows without a rate never reach the subquery."""
    now_sql, now_params = broker._now_sql(now)
    return (
        f" AND ({table}.rate_limit IS NULL OR NOT EXISTS (SELECT 1 FROM {RATE_TABLE} r "
        f"WHERE r.backend = {table}.backend AND r.limit_key = {table}.task_path "
        f"AND r.free_at > {now_sql}))",
        now_params,
    )


def path_filter(table: str, paths: Sequence[str]) -> str:
    """SQL to AND into a pick: none of ``paths``' rate-limited tasks (one %s per path)."""
    if not paths:
        return ""
    marks = ", ".join(["%s"] * len(paths))
    return f" AND ({table}.rate_limit IS NULL OR {table}.task_path NOT IN ({marks}))"


def rate_limited(broker: DatabaseStore, now: datetime) -> dict[str, datetime]:
    """Limit keys whose window is full now -> when the next start fits (status, metrics)."""
    with broker.connection.cursor() as cursor:
        at = store_now(broker, cursor, now)
        cursor.execute(
            f"SELECT limit_key, free_at FROM {RATE_TABLE} WHERE backend = %s AND free_at > %s "
            "ORDER BY limit_key",
            [broker.backend_alias, broker._dt_param(at)],
        )
        rows = cursor.fetchall()
    result = {}
    for key, free_at in rows:
        value = free_at
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        name = str(key) if str(key).startswith("pool:") else rates.task_key(str(key))
        result[name] = value
    return result


__all__ = [
    "RateGate",
    "claimable_filter",
    "limit_key",
    "path_filter",
    "rate_limited",
    "store_now",
]

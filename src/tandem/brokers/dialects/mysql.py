"""MariaDB/MySQL: leases on the server's clock (``UTC_TIMESTAMP(6)``, UTC whatever the session's
time zone), and no ``UPDATE … RETURNING``: a claim is ``SELECT … FOR UPDATE SKIP LOCKED``,
``UPDATE`` and ``SELECT`` in one transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, OperationalError

from tandem.brokers.base import ErrorRecord
from tandem.brokers.database_rows import TABLE
from tandem.brokers.dialects.base import Dialect, Pick

if TYPE_CHECKING:
    from datetime import datetime

    from tandem.brokers.database_store import DatabaseStore

#: ER_LOCK_DEADLOCK: InnoDB chose this transaction as a deadlock's victim and rolled all of it
#: back. (ER_LOCK_WAIT_TIMEOUT, 1205, is not one: by default it rolls back the statement only.)
DEADLOCK = 1213


class MySQLDialect(Dialect):
    vendor = "mysql"
    server_now = "UTC_TIMESTAMP(6)"
    clock_now = "UTC_TIMESTAMP(6)"
    subinterpreter_blocker = (
        "the task database is MariaDB/MySQL, whose driver (mysqlclient) cannot load in "
        "a subinterpreter"
    )

    def is_deadlock(self, exc: BaseException) -> bool:
        return isinstance(exc, OperationalError) and exc.args[:1] == (DEADLOCK,)

    def append_json(self, column: str) -> str:
        return f"JSON_ARRAY_APPEND({column}, '$', JSON_EXTRACT(%s, '$'))"

    def row_lock(self, *, share: bool = False, of: str = "") -> str:
        return " LOCK IN SHARE MODE" if share else " FOR UPDATE"

    def insert_ignore(self, into: str) -> str:
        return f"INSERT IGNORE INTO {into}"

    def insert_ignore_locking(self, into: str) -> str:
        # A duplicate under ``INSERT IGNORE`` takes a shared lock, and two transactions
        # upgrading theirs deadlock: ``ON DUPLICATE KEY UPDATE`` locks it exclusively instead.
        return f"INSERT INTO {into} ON DUPLICATE KEY UPDATE id = id"

    def update_returning(
        self,
        cursor: Any,
        update: str,
        params: Sequence[Any],
        returning: str,
        reselect: str,
        reselect_params: Sequence[Any],
    ) -> None:
        cursor.execute(update, params)
        cursor.execute(reselect, reselect_params)

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
        ids = self._pick(broker, cursor, pick)
        if not ids:
            return []
        _, rows = self.update_claimed(broker, cursor, ids, set_clause, set_params, worker_id, now)
        return rows

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
        ids = self._update(broker, cursor, ids, set_clause, set_params, worker_id, now)
        if not ids:
            return ids, []
        marks = broker._placeholders(len(ids))
        cursor.execute(f"SELECT {broker._select_columns()} FROM {TABLE} WHERE id IN ({marks})", ids)
        return ids, list(cursor.fetchall())

    def _pick(self, broker: DatabaseStore, cursor: Any, pick: Pick) -> list[Any]:
        """Lock up to ``pick.limit`` claimable ids, skipping rows others hold.

        InnoDB locks every row it reads for ``FOR UPDATE``; a filesort (``queue_name IN (…)``, or
        an ORDER BY the index cannot give) would read — and lock — every READY row, so one
        claimer would starve the rest. One ``queue_name = …`` branch per queue, ordered exactly
        as the claim index, reads (and locks) at most ``limit`` rows each; the best ``limit`` of
        them are kept and the other locks end with the transaction.
        """
        columns = ", ".join(column for column, _ in pick.order)
        branch = (
            f"(SELECT id, {columns} FROM {TABLE} WHERE status = 'READY' "
            f"AND backend = %s AND queue_name = %s AND available_at <= %s{pick.filters} "
            f"ORDER BY {pick.order_by} LIMIT %s FOR UPDATE SKIP LOCKED)"
        )
        params: list[Any] = []
        for queue in pick.queues:
            params += [broker.backend_alias, queue, pick.bound, *pick.filter_params, pick.limit]
        cursor.execute(" UNION ALL ".join([branch] * len(pick.queues)), params)
        descending = [d for _, d in pick.order]

        def key(row: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(-v if d else v for v, d in zip(row[1:], descending, strict=True))

        rows = sorted(cursor.fetchall(), key=key)
        return [row[0] for row in rows[: pick.limit]]

    def _update(
        self,
        broker: DatabaseStore,
        cursor: Any,
        ids: list[Any],
        set_clause: str,
        set_params: list[Any],
        worker_id: str,
        now: datetime,
    ) -> list[Any]:
        """Move the picked rows to RUNNING; return the ids that moved.

        MariaDB checks every CHECK constraint of a row on any UPDATE of it, so a row whose JSON
        was corrupted past its ``JSON_VALID`` constraints (they were switched off when it was
        written) refuses every update — and would fail every claim of its batch, forever. Such
        a row is failed on its own instead (``_fail_unreadable``), never run.
        """
        marks = broker._placeholders(len(ids))
        try:
            cursor.execute(
                f"UPDATE {TABLE} SET {set_clause} WHERE id IN ({marks})", [*set_params, *ids]
            )
            return ids
        except IntegrityError:
            pass
        moved = []
        for task_id in ids:
            try:
                cursor.execute(
                    f"UPDATE {TABLE} SET {set_clause} WHERE id = %s", [*set_params, task_id]
                )
            except IntegrityError as exc:
                self._fail_unreadable(broker, cursor, task_id, exc, worker_id, now)
            else:
                moved.append(task_id)
        return moved

    def _fail_unreadable(
        self,
        broker: DatabaseStore,
        cursor: Any,
        task_id: Any,
        exc: IntegrityError,
        worker_id: str,
        now: datetime,
    ) -> None:
        """FAIL a row MariaDB refuses to update: text that is not JSON is kept, as a JSON string."""
        error = ErrorRecord(
            exception_class_path="tandem.exceptions.TaskNotRunnable",
            traceback=(
                "tandem.exceptions.TaskNotRunnable: The stored row could not be claimed: the "
                f"database refused to update it ({exc}); its JSON columns hold text that is not "
                "JSON (kept as a JSON string); the row was tampered with or corrupted, and the "
                "task was not run.\n"
            ),
        )
        keep = ", ".join(
            f"{c} = IF(JSON_VALID({c}) OR {c} IS NULL, {c}, JSON_QUOTE({c}))"
            for c in ("args", "kwargs", "return_value", "progress")
        )
        appended = {
            c: f"IF(JSON_VALID({c}), JSON_ARRAY_APPEND({c}, '$', JSON_EXTRACT(%s, '$')), "
            "JSON_ARRAY(JSON_EXTRACT(%s, '$')))"
            for c in ("errors", "worker_ids")
        }
        cursor.execute(
            f"UPDATE {TABLE} SET status = 'FAILED', {keep}, errors = {appended['errors']}, "
            f"worker_ids = {appended['worker_ids']}, started_at = COALESCE(started_at, %s), "
            "last_attempted_at = %s, finished_at = %s, worker_id = '', "
            "lease_expires_at = NULL, unique_key = NULL WHERE id = %s",
            [
                *[broker._json_param(error.as_json())] * 2,
                *[json.dumps(worker_id)] * 2,
                *[broker._dt_param(now)] * 3,
                task_id,
            ],
        )


__all__ = ["DEADLOCK", "MySQLDialect"]

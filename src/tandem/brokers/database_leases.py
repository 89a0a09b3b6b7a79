"""Leases on the database store: renewing them, settling and releasing attempts, and
recovering the attempts of workers whose leases ran out.

Settling writes every ending in one transaction (``Dialect.settle_rows``: one statement on
PostgreSQL, one ``executemany`` per kind of ending elsewhere), each row guarded by its lease
(worker id and attempt token).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

from tandem.brokers import database_concurrency
from tandem.brokers.base import (
    FAILED,
    READY,
    Recovered,
    Settlement,
    allowed_attempts,
    lost_lease_error,
    released_error,
)
from tandem.brokers.database_rows import TABLE
from tandem.brokers.database_store import DatabaseStore, round_ride, write_transaction
from tandem.brokers.database_workflow import IDS_PER_STATEMENT


class DatabaseLeases(DatabaseStore):
    """Mixed into ``DatabaseBroker``."""

    def renew(
        self, worker_id: str, attempts: Mapping[str, str], lease_until: datetime, now: datetime
    ) -> set[str]:
        if not attempts:
            return set()
        lease_sql, lease_params = self._lease_sql(lease_until, now)
        pairs = ", ".join(["(%s, %s)"] * len(attempts))
        keys = [v for task_id, token in attempts.items() for v in (self._id_param(task_id), token)]
        where = f"(id, attempt_token) IN ({pairs}) AND worker_id = %s AND status = 'RUNNING'"
        connection = self.connection
        with write_transaction(connection), connection.cursor() as cursor:
            self.dialect.update_returning(
                cursor,
                f"UPDATE {TABLE} SET lease_expires_at = {lease_sql} WHERE {where}",
                [*lease_params, *keys, worker_id],
                "id",
                f"SELECT id FROM {TABLE} WHERE {where}",
                [*keys, worker_id],
            )
            return {str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()}

    def settle(self, settlements: Sequence[Settlement]) -> int:
        if not settlements:
            return 0
        finished = [s for s in settlements if s.status != READY]
        finished_ids = [s.id for s in finished]
        # Workflows: the unresolved edges of the finished tasks, read after their write — by
        # the settle's own statement where the store can send both at once.
        probe = self._edges_probe(finished_ids) if 0 < len(finished) <= IDS_PER_STATEMENT else None
        connection = self.connection
        ride = round_ride(connection)  # the round's claim, sent with the settle where it can be
        with write_transaction(connection), self.dialect.cursor(connection) as cursor:
            written, edges = self.dialect.settle_rows(self, cursor, settlements, probe, ride)
            database_concurrency.free_slots(
                self, cursor, [(s.id, s.attempt_token) for s in settlements if s.holds_slot]
            )
            if finished:
                now = max(s.finished_at for s in finished)
                self._parents_finished(cursor, finished_ids, now, edges=edges)
        return written

    def release(self, worker_id: str, attempts: Mapping[str, str], now: datetime) -> int:
        if not attempts:
            return 0
        error = released_error(worker_id, now)
        rows = [
            [
                self._json_param(error.as_json()),
                self._dt_param(now),
                self._id_param(task_id),
                worker_id,
                token,
            ]
            for task_id, token in attempts.items()
        ]
        with write_transaction(self.connection), self.connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {TABLE} SET status = 'READY', errors = {self._append_json('errors')}, "
                "available_at = %s, worker_id = '', lease_expires_at = NULL, "
                "cancel_requested_at = NULL "
                "WHERE id = %s AND worker_id = %s AND attempt_token = %s AND status = 'RUNNING'",
                rows,
            )
            released = int(max(cursor.rowcount, 0))
            database_concurrency.free_slots(self, cursor, attempts.items())
            return released

    def recover_expired(self, now: datetime, recovery_max_attempts: int) -> list[Recovered]:
        connection = self.connection
        lock = self.dialect.skip_locked
        recovered: list[Recovered] = []
        now_sql, now_params = self._now_sql(now)
        with write_transaction(connection), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {self._select_columns()} FROM {TABLE} WHERE status = 'RUNNING' "
                f"AND lease_expires_at < {now_sql} AND backend = %s LIMIT 500{lock}",
                [*now_params, self.backend_alias],
            )
            expired = [self._row_to_task(row) for row in cursor.fetchall()]
            for task in expired:
                error = lost_lease_error(task.worker_id, task.lease_expires_at, now)
                spent = task.attempts >= allowed_attempts(task.max_attempts, recovery_max_attempts)
                status = FAILED if spent else READY
                free_key = ", unique_key = NULL" if spent else ""
                cursor.execute(
                    f"UPDATE {TABLE} SET status = %s, errors = {self._append_json('errors')}, "
                    "finished_at = %s, available_at = %s, worker_id = '', lease_expires_at = NULL, "
                    f"cancel_requested_at = NULL{free_key} "
                    "WHERE id = %s AND worker_id = %s AND attempt_token = %s "
                    "AND status = 'RUNNING'",
                    [
                        status,
                        self._json_param(error.as_json()),
                        self._dt_param(now if spent else None),
                        self._dt_param(task.available_at if spent else now),
                        self._id_param(task.id),
                        task.worker_id,
                        task.attempt_token,
                    ],
                )
                if cursor.rowcount:
                    recovered.append(Recovered(id=task.id, status=status, worker_id=task.worker_id))
                    database_concurrency.free_slots(self, cursor, [(task.id, task.attempt_token)])
                    if spent:  # workflows
                        self._parents_finished(cursor, [task.id], now)
        return recovered


__all__ = ["DatabaseLeases"]

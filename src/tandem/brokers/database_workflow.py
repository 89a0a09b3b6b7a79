"""Workflows on the database store (SQLite, PostgreSQL, MariaDB): see ``brokers.workflow``.

Four tables (``tandem.models``): ``TaskDependency`` (one row per edge, indexed by parent and by
child), ``TaskWait`` (one row per waiting task: how many parents it still waits for),
``TaskGroup`` and ``TaskGroupMember``. A waiting task's row is READY with ``available_at =
WAITING_UNTIL``, so the claim's index range (``available_at <= now``) never reads it.

The write that finishes a parent runs ``_parents_finished`` in its own transaction: an index
lookup of that parent's unresolved edges (``tandem_dep_parent_idx``), a decrement of each
child's ``TaskWait.remaining`` (a row lock: two parents finishing at once on two hosts are
serialised there, so exactly one of them sees zero), and, at zero, the child made claimable or
ended FAILED with ``DependencyFailed``. Pushing a waiting task locks its parents' rows
(``FOR SHARE``) while it reads their status, so a parent cannot finish unseen in between.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from tandem import wakeup
from tandem.brokers.base import FAILED, NewTask
from tandem.brokers.database_store import DatabaseStore, write_transaction
from tandem.brokers.workflow import (
    WAITING_UNTIL,
    Dependency,
    GroupSpec,
    GroupState,
    check_dependencies,
    dependency_failed_error,
)
from tandem.models import TaskDependency, TaskGroup, TaskGroupMember, TaskRecord, TaskWait

TASKS = TaskRecord._meta.db_table
EDGES = TaskDependency._meta.db_table
WAITS = TaskWait._meta.db_table
GROUPS = TaskGroup._meta.db_table
MEMBERS = TaskGroupMember._meta.db_table
#: Ids per ``IN (…)`` (rows per INSERT of edges and members: ``dialects.base``).
IDS_PER_STATEMENT = 500


def _chunks[T](items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DatabaseWorkflows(DatabaseStore):
    """Mixed into ``DatabaseBroker``."""

    def _id_params(self, ids: Iterable[str]) -> list[Any]:
        """``_id_param`` of many ids (the connection looked up once)."""
        if self.connection.features.has_native_uuid_field:
            return [uuid.UUID(i) for i in ids]
        return [uuid.UUID(i).hex for i in ids]

    def _uuid(self, raw: Any) -> str:
        return str(uuid.UUID(str(raw)))

    # -- push ----------------------------------------------------------------------------------

    def push_workflow(
        self,
        tasks: Sequence[NewTask],
        dependencies: Sequence[Dependency] = (),
        group: GroupSpec | None = None,
    ) -> list[str]:
        if any(t.unique_key is not None for t in tasks):
            raise ValueError("unique tasks cannot be part of a workflow")
        check_dependencies(dependencies, [t.id for t in tasks])
        waiting = {d.task_id for d in dependencies}
        with write_transaction(self.connection), self.connection.cursor() as cursor:
            batch = self.dialect.workflow_insert_batch
            for chunk in _chunks(tasks, batch):
                self._insert(chunk, ())
            if waiting:
                # Stored unclaimable (the transaction is not committed yet: nobody saw them).
                ids = [self._id_param(t) for t in sorted(waiting)]
                for part in _chunks(ids, IDS_PER_STATEMENT):
                    cursor.execute(
                        f"UPDATE {TASKS} SET available_at = %s "
                        f"WHERE id IN ({self._placeholders(len(part))})",
                        [self._dt_param(WAITING_UNTIL), *part],
                    )
                self._push_dependencies(cursor, dependencies, tasks[0].enqueued_at, tasks)
            if group is not None:
                self._push_group(cursor, group)
            self.notify(sorted({t.queue_name for t in tasks if t.id not in waiting}))
        return [t.id for t in tasks]

    def _push_dependencies(
        self,
        cursor: Any,
        dependencies: Sequence[Dependency],
        now: datetime,
        pushed: Sequence[NewTask],
    ) -> None:
        # Tasks stored by this very call are READY (and invisible to others): no read, no lock.
        status: dict[str, str] = {t.id: "READY" for t in pushed}
        parents = sorted({p for d in dependencies for p in d.parent_ids} - set(status))
        for chunk in _chunks(parents, IDS_PER_STATEMENT):
            cursor.execute(
                f"SELECT id, status FROM {TASKS} WHERE id IN ({self._placeholders(len(chunk))}) "
                f"AND backend = %s{self.dialect.row_lock(share=True)}",
                [*[self._id_param(p) for p in chunk], self.backend_alias],
            )
            status.update((self._uuid(i), s) for i, s in cursor.fetchall())
        if missing := [p for p in parents if p not in status]:
            raise ValueError(
                f"parent task {missing[0]} does not exist in backend {self.backend_alias!r}"
            )
        edges: list[list[Any]] = []
        waits: list[list[Any]] = []
        resolvable: list[str] = []
        for dep in dependencies:
            remaining = failed = 0
            child = self._id_param(dep.task_id)
            keys = self._id_params(dep.parent_ids)
            for position, (parent, key) in enumerate(zip(dep.parent_ids, keys, strict=True)):
                finished = status[parent] in ("SUCCESSFUL", "FAILED")
                failed += status[parent] == FAILED
                remaining += not finished
                edges.append([child, key, position, finished])
            waits.append(
                [
                    self._id_param(dep.task_id),
                    remaining,
                    failed,
                    dep.on_parent_failure,
                    dep.pass_result,
                ]
            )
            if remaining == 0:
                resolvable.append(dep.task_id)
        self.dialect.insert_rows(
            cursor,
            EDGES,
            ("child_id", "parent_id", "position", "resolved"),
            edges,
            ("uuid", "uuid", "integer", "boolean"),
        )
        self.dialect.insert_rows(
            cursor,
            WAITS,
            ("task_id", "remaining", "failed", "on_parent_failure", "pass_result"),
            waits,
        )
        if resolvable:
            self._resolve_waiting(cursor, resolvable, now)

    def _push_group(self, cursor: Any, group: GroupSpec) -> None:
        cursor.execute(
            f"INSERT INTO {GROUPS} (id, backend, created_at, total, then_id) "
            "VALUES (%s, %s, %s, %s, %s)",
            [
                self._id_param(group.id),
                group.backend,
                self._dt_param(group.created_at),
                len(group.member_ids),
                None if group.then_id is None else self._id_param(group.then_id),
            ],
        )
        gid = self._id_param(group.id)
        self.dialect.insert_rows(
            cursor,
            MEMBERS,
            ("group_id", "task_id", "position"),
            [[gid, m, n] for n, m in enumerate(self._id_params(group.member_ids))],
            ("uuid", "uuid", "integer"),
        )

    # -- resolution, in the write that finished the parents --------------------------------------

    def _edges_probe(self, parent_ids: Sequence[str]) -> tuple[str, list[Any]]:
        """The read (and row lock) of the unresolved edges of up to ``IDS_PER_STATEMENT``
        parents: by the parent index alone (no join the planner could start from the task
        table), so with no workflow in use it is one probe that finds nothing. The ids are one
        array where the store takes one (``Dialect.any_id``: PostgreSQL)."""
        where, params = self.dialect.any_id(self, "parent_id", parent_ids) or (
            f"parent_id IN ({self._placeholders(len(parent_ids))})",
            self._id_params(parent_ids),
        )
        return (
            f"SELECT id, child_id, parent_id FROM {EDGES} WHERE {where} AND resolved = %s"
            + self.dialect.row_lock(),
            [*params, False],
        )

    def _parents_finished(
        self,
        cursor: Any,
        parent_ids: Sequence[str],
        now: datetime,
        *,
        edges: list[tuple[Any, Any, Any]] | None = None,
    ) -> None:
        """Resolve the unresolved edges of ``parent_ids`` that have finished (others: no-op).
        ``edges``: what ``_edges_probe`` of ``parent_ids`` read already, in this transaction
        after the write that finished them (a settle sends both at once)."""
        pending = list(parent_ids)
        while pending:
            if edges is None:
                edges = []
                for chunk in _chunks(pending, IDS_PER_STATEMENT):
                    cursor.execute(*self._edges_probe(chunk))
                    edges += cursor.fetchall()
            if not edges:
                return
            status: dict[str, str] = {}
            parents = sorted({self._uuid(parent) for _, _, parent in edges})
            for chunk in _chunks(parents, IDS_PER_STATEMENT):
                cursor.execute(
                    f"SELECT id, status FROM {TASKS} WHERE id IN "
                    f"({self._placeholders(len(chunk))}){self.dialect.row_lock(share=True)}",
                    self._id_params(chunk),
                )
                status.update((self._uuid(i), s) for i, s in cursor.fetchall())
            hits = [
                (edge, child, status[self._uuid(parent)])
                for edge, child, parent in edges
                if status.get(self._uuid(parent)) in ("SUCCESSFUL", "FAILED")
            ]
            if not hits:
                return
            for chunk in _chunks([h[0] for h in hits], IDS_PER_STATEMENT):
                cursor.execute(
                    f"UPDATE {EDGES} SET resolved = %s "
                    f"WHERE id IN ({self._placeholders(len(chunk))})",
                    [True, *chunk],
                )
            done = Counter(self._uuid(child) for _, child, _ in hits)
            failed = Counter(self._uuid(child) for _, child, status in hits if status == FAILED)
            cursor.executemany(
                f"UPDATE {WAITS} SET remaining = remaining - %s, failed = failed + %s "
                "WHERE task_id = %s",
                [[n, failed[child], self._id_param(child)] for child, n in done.items()],
            )
            zero: list[str] = []
            for chunk in _chunks(sorted(done), IDS_PER_STATEMENT):
                cursor.execute(
                    f"SELECT task_id FROM {WAITS} WHERE task_id IN "
                    f"({self._placeholders(len(chunk))}) AND remaining = 0"
                    + self.dialect.row_lock(),
                    [self._id_param(c) for c in chunk],
                )
                zero += [self._uuid(row[0]) for row in cursor.fetchall()]
            pending = self._resolve_waiting(cursor, zero, now)
            edges = None

    def _resolve_waiting(self, cursor: Any, task_ids: Sequence[str], now: datetime) -> list[str]:
        """Waiting tasks with no unfinished parent: claimable now, or FAILED (returned)."""
        if not task_ids:
            return []
        rows: list[tuple[Any, ...]] = []
        for chunk in _chunks(list(task_ids), IDS_PER_STATEMENT):
            cursor.execute(
                f"SELECT w.task_id, w.failed, w.on_parent_failure, w.pass_result, t.queue_name "
                f"FROM {WAITS} w JOIN {TASKS} t ON t.id = w.task_id "
                f"WHERE w.task_id IN ({self._placeholders(len(chunk))}) AND t.status = 'READY'",
                [self._id_param(c) for c in chunk],
            )
            rows += cursor.fetchall()
        failing: list[tuple[str, int]] = []
        released: list[str] = []
        passing: list[str] = []
        queues: set[str] = set()
        for task_id, failed, policy, pass_result, queue in rows:
            task_id = self._uuid(task_id)
            if failed and policy == "fail":
                failing.append((task_id, int(failed)))
            else:
                released.append(task_id)
                queues.add(queue)
                if pass_result:
                    passing.append(task_id)
        if failing:
            cursor.executemany(
                f"UPDATE {TASKS} SET status = 'FAILED', errors = {self._append_json('errors')}, "
                "finished_at = %s, unique_key = NULL WHERE id = %s AND status = 'READY'",
                [
                    [
                        json.dumps(dependency_failed_error(t, n, now).as_json()),
                        self._dt_param(now),
                        self._id_param(t),
                    ]
                    for t, n in failing
                ],
            )
        for task_id in passing:
            self._pass_result(cursor, task_id)
        if released:
            moment = self._dt_param(now)
            for chunk in _chunks(released, IDS_PER_STATEMENT):
                cursor.execute(
                    f"UPDATE {TASKS} SET available_at = CASE WHEN run_after IS NOT NULL AND "
                    "run_after > %s THEN run_after ELSE %s END "
                    f"WHERE id IN ({self._placeholders(len(chunk))}) AND status = 'READY'",
                    [moment, moment, *[self._id_param(t) for t in chunk]],
                )
        for chunk in _chunks([self._id_param(t) for t in task_ids], IDS_PER_STATEMENT):
            cursor.execute(
                f"DELETE FROM {WAITS} WHERE task_id IN ({self._placeholders(len(chunk))})",
                list(chunk),
            )
        if queues:
            self.notify(sorted(queues))
            alias = self.backend_alias

            def wake() -> None:
                for queue in sorted(queues):
                    wakeup.notify(alias, queue)

            transaction.on_commit(wake, using=self.database)
        return [t for t, _ in failing]

    def _pass_result(self, cursor: Any, task_id: str) -> None:
        """A chain step: its parent's return value becomes its first positional argument."""
        text = self.dialect.json_text
        cursor.execute(
            f"SELECT {text('p.return_value')}, {text('c.args')} FROM {EDGES} d "
            f"JOIN {TASKS} p ON p.id = d.parent_id JOIN {TASKS} c ON c.id = d.child_id "
            "WHERE d.child_id = %s ORDER BY d.position",
            [self._id_param(task_id)],
        )
        row = cursor.fetchone()
        if row is None:
            return
        value = json.loads(row[0]) if row[0] is not None else None
        args = json.loads(row[1]) if isinstance(row[1], str | bytes) else list(row[1] or [])
        cursor.execute(
            f"UPDATE {TASKS} SET args = {self._json_literal()} WHERE id = %s",
            [json.dumps([value, *args]), self._id_param(task_id)],
        )

    # -- pruning -------------------------------------------------------------------------------

    def _forget_workflows(self, task_ids: Sequence[Any]) -> None:
        """Pruned tasks (ids as the ORM gave them): delete the edges to their parents, their
        waits, their group memberships, and the groups left without members (a surviving
        child keeps its edge to a pruned parent until it is pruned itself, so its
        ``parent_ids`` stay whole). Every delete is index-backed."""
        if not task_ids:
            return
        keys = [self._id_param(str(i)) for i in task_ids]
        with self.connection.cursor() as cursor:
            for chunk in _chunks(keys, IDS_PER_STATEMENT):
                marks = self._placeholders(len(chunk))
                for table, column in ((EDGES, "child_id"), (WAITS, "task_id")):
                    cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
                cursor.execute(
                    f"SELECT DISTINCT group_id FROM {MEMBERS} WHERE task_id IN ({marks})", chunk
                )
                groups = [row[0] for row in cursor.fetchall()]
                cursor.execute(f"DELETE FROM {MEMBERS} WHERE task_id IN ({marks})", chunk)
                for group in groups:
                    cursor.execute(
                        f"DELETE FROM {GROUPS} WHERE id = %s AND NOT EXISTS "
                        f"(SELECT 1 FROM {MEMBERS} WHERE group_id = %s)",
                        [group, group],
                    )

    # -- reads ---------------------------------------------------------------------------------

    def parent_ids(self, task_id: str) -> list[str]:
        return self._edge_ids("parent_id", "child_id", task_id)

    def child_ids(self, task_id: str) -> list[str]:
        return self._edge_ids("child_id", "parent_id", task_id)

    def _edge_ids(self, wanted: str, given: str, task_id: str) -> list[str]:
        try:
            key = self._id_param(str(task_id))
        except ValueError:
            return []
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {wanted} FROM {EDGES} WHERE {given} = %s ORDER BY position, id", [key]
            )
            return [self._uuid(row[0]) for row in cursor.fetchall()]

    def get_group(self, group_id: str) -> GroupState | None:
        try:
            key = self._id_param(str(group_id))
        except ValueError:
            return None
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, backend, created_at, then_id FROM {GROUPS} "
                "WHERE id = %s AND backend = %s",
                [key, self.backend_alias],
            )
            row = cursor.fetchone()
            if row is None:
                return None
            cursor.execute(
                f"SELECT task_id FROM {MEMBERS} WHERE group_id = %s ORDER BY position", [key]
            )
            members = tuple(self._uuid(r[0]) for r in cursor.fetchall())
        return self._group(row, members)

    def _group(self, row: Sequence[Any], members: tuple[str, ...]) -> GroupState:
        created = row[2]
        if isinstance(created, str):
            created = parse_datetime(created)
        if created is not None and created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return GroupState(
            id=self._uuid(row[0]),
            backend=row[1],
            created_at=created,
            member_ids=members,
            then_id=None if row[3] is None else self._uuid(row[3]),
        )

    def finished_count(self, task_ids: Sequence[str]) -> int:
        done = 0
        with self.connection.cursor() as cursor:
            for chunk in _chunks(list(task_ids), IDS_PER_STATEMENT):
                cursor.execute(
                    f"SELECT COUNT(*) FROM {TASKS} WHERE id IN ({self._placeholders(len(chunk))}) "
                    "AND status IN ('SUCCESSFUL', 'FAILED')",
                    self._id_params(chunk),
                )
                row = cursor.fetchone()
                done += int(row[0]) if row else 0
        return done

    def recent_groups(self, limit: int) -> list[GroupState]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, backend, created_at, then_id FROM {GROUPS} WHERE backend = %s "
                "ORDER BY created_at DESC LIMIT %s",
                [self.backend_alias, limit],
            )
            rows = cursor.fetchall()
        groups = []
        for row in rows:
            state = self.get_group(self._uuid(row[0]))
            if state is not None:
                groups.append(state)
        return groups


__all__ = ["DatabaseWorkflows"]

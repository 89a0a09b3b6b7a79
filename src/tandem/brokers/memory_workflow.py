"""Workflows in the memory twin: the same semantics as the stores (``brokers.workflow``)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from tandem.brokers.base import FAILED, READY, SUCCESSFUL, NewTask, StoredTask
from tandem.brokers.workflow import (
    Dependency,
    GroupSpec,
    GroupState,
    check_dependencies,
    dependency_failed_error,
)


@dataclass(slots=True)
class _Wait:
    remaining: int
    failed: int
    on_parent_failure: str
    pass_result: bool


class MemoryWorkflows:
    """Mixed into ``MemoryBroker``: waiting tasks, their edges and groups, under its lock."""

    backend_alias: str
    _tasks: dict[str, StoredTask]
    _lock: threading.Lock

    def _workflow_state(
        self,
    ) -> tuple[dict[str, _Wait], dict[str, list[str]], dict[str, list[str]], dict[str, GroupState]]:
        state = self.__dict__.setdefault("_workflow", ({}, {}, {}, {}))
        return state  # type: ignore[no-any-return]

    def _push_one(self, new: NewTask) -> str:  # provided by MemoryBroker
        raise NotImplementedError

    def _is_waiting(self, task_id: str) -> bool:
        return task_id in self._workflow_state()[0]

    def push_workflow(
        self,
        tasks: Sequence[NewTask],
        dependencies: Sequence[Dependency] = (),
        group: GroupSpec | None = None,
    ) -> list[str]:
        if any(t.unique_key is not None for t in tasks):
            raise ValueError("unique tasks cannot be part of a workflow")
        check_dependencies(dependencies, [t.id for t in tasks])
        waits, parents, children, groups = self._workflow_state()
        with self._lock:
            pushed = {t.id for t in tasks}
            for dep in dependencies:
                for parent in dep.parent_ids:
                    if parent not in pushed and parent not in self._tasks:
                        raise ValueError(
                            f"parent task {parent} does not exist in backend {self.backend_alias!r}"
                        )
            ids = [self._push_one(t) for t in tasks]
            resolvable: list[str] = []
            for dep in dependencies:
                remaining = failed = 0
                for parent in dep.parent_ids:
                    status = self._tasks[parent].status
                    if status == FAILED:
                        failed += 1
                    elif status != SUCCESSFUL:
                        remaining += 1
                        children.setdefault(parent, []).append(dep.task_id)
                    else:
                        children.setdefault(parent, []).append(dep.task_id)
                parents[dep.task_id] = list(dep.parent_ids)
                waits[dep.task_id] = _Wait(
                    remaining, failed, dep.on_parent_failure, dep.pass_result
                )
                if remaining == 0:
                    resolvable.append(dep.task_id)
            if group is not None:
                groups[group.id] = GroupState(
                    id=group.id,
                    backend=group.backend,
                    created_at=group.created_at,
                    member_ids=group.member_ids,
                    then_id=group.then_id,
                )
            now = max((t.enqueued_at for t in tasks), default=None)
            if now is not None:
                self._resolve(resolvable, now)
            return ids

    def _parents_finished(self, finished: Iterable[str], now: datetime) -> None:
        """Called under the lock by every write that ended tasks SUCCESSFUL or FAILED."""
        waits, _parents, children, _groups = self._workflow_state()
        resolvable: list[str] = []
        for parent in finished:
            status = self._tasks[parent].status
            for child in children.get(parent, ()):
                wait = waits.get(child)
                if wait is None or wait.remaining == 0:
                    continue
                wait.remaining -= 1
                if status == FAILED:
                    wait.failed += 1
                if wait.remaining == 0:
                    resolvable.append(child)
        self._resolve(resolvable, now)

    def _resolve(self, ready: list[str], now: datetime) -> None:
        waits, parents, _children, _groups = self._workflow_state()
        failed_now: list[str] = []
        for child in ready:
            wait = waits.pop(child)
            task = self._tasks[child]
            if task.status != READY:
                continue
            if wait.failed and wait.on_parent_failure == "fail":
                self._tasks[child] = replace(
                    task,
                    status=FAILED,
                    errors=(*task.errors, dependency_failed_error(child, wait.failed, now)),
                    finished_at=now,
                )
                failed_now.append(child)
                continue
            args = task.args
            if wait.pass_result:
                parent = self._tasks.get(parents[child][0])
                args = [parent.return_value if parent else None, *task.args]
            available = max(now, task.run_after) if task.run_after else now
            self._tasks[child] = replace(task, args=args, available_at=available)
        if failed_now:
            self._parents_finished(failed_now, now)

    def _forget_workflows(self, task_ids: Iterable[str]) -> None:
        """Pruned tasks: their own parent and child lists go (under the lock); a surviving
        child keeps a pruned parent's id; groups keep their member ids."""
        _waits, parents, children, _groups = self._workflow_state()
        for task_id in task_ids:
            parents.pop(task_id, None)
            children.pop(task_id, None)

    def parent_ids(self, task_id: str) -> list[str]:
        with self._lock:
            return list(self._workflow_state()[1].get(task_id, ()))

    def child_ids(self, task_id: str) -> list[str]:
        with self._lock:
            return list(self._workflow_state()[2].get(task_id, ()))

    def get_group(self, group_id: str) -> GroupState | None:
        with self._lock:
            group = self._workflow_state()[3].get(str(group_id))
        return group if group is not None and group.backend == self.backend_alias else None

    def recent_groups(self, limit: int) -> list[GroupState]:
        with self._lock:
            mine = [
                g for g in self._workflow_state()[3].values() if g.backend == self.backend_alias
            ]
        return sorted(mine, key=lambda g: g.created_at, reverse=True)[:limit]


__all__ = ["MemoryWorkflows"]

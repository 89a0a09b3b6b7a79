"""Workflows: tasks that wait for other tasks (``enqueue_after``), chains and groups.

Everything here is stored at once, through ``Broker.push_workflow``: on the database backend in
one transaction (the caller's, when there is one: rolled back with it), on Redis in one script.
A task that waits is READY but not claimable, and costs no polling: the write that finishes its
last parent makes it claimable (or ends it FAILED with ``DependencyFailed``).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.tasks import TaskResult, TaskResultStatus
from django.tasks.signals import task_enqueued
from django.utils import timezone

from tandem.backends import tandem_backend as _backend
from tandem.brokers.base import NewTask
from tandem.brokers.workflow import ON_PARENT_FAILURE, Dependency, GroupSpec

if TYPE_CHECKING:
    from tandem.backends.base import TandemBackend
    from tandem.tasks import AnyTask

type Step = tuple[AnyTask, Sequence[Any], dict[str, Any] | None]
FINISHED = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)


def _parent_id(parent: Any, backend: str, index: int) -> str:
    if isinstance(parent, TaskResult):
        if parent.backend != backend:
            raise ValueError(
                f"enqueue_after() parent {index} belongs to backend {parent.backend!r}, not to "
                f"the task's backend {backend!r}: a task can only wait for tasks of its own "
                "backend."
            )
        return str(parent.id)
    try:
        return str(uuid.UUID(str(parent)))
    except ValueError:
        raise ValueError(
            f"enqueue_after() parent {index} must be a TaskResult or a task id, got {parent!r}."
        ) from None


def _step(item: Any, where: str) -> tuple[AnyTask, Sequence[Any], dict[str, Any]]:
    try:
        task, args, kwargs = item
    except (TypeError, ValueError):
        raise TypeError(f"{where} must be a (task, args, kwargs) triple, got {item!r}.") from None
    return task, args, dict(kwargs or {})


def _new_task(
    backend: TandemBackend,
    task: AnyTask,
    args: Any,
    kwargs: Any,
    checked: set[int] | None = None,
) -> NewTask:
    """``backend._new_task``; ``checked``: ids of the task objects already validated (a group's
    10,000 items of one task are validated once)."""
    if checked is None or id(task) not in checked:
        new = backend._new_task(task, args, kwargs)
        if checked is not None:
            checked.add(id(task))
    else:
        new = backend._new_task(task, args, kwargs, checked=True)
    if new.unique_key is not None:
        raise ValueError(
            f"task {task.module_path!r} is unique: unique tasks cannot wait for other tasks or "
            "be part of a chain or group (their key could answer another task's id)."
        )
    return new


def _same_backend(tasks: Sequence[AnyTask], where: str) -> str:
    aliases = {t.backend for t in tasks}
    if len(aliases) > 1:
        raise ValueError(f"{where}: every task must use the same backend, got {sorted(aliases)}.")
    return aliases.pop()


def _store(
    backend: TandemBackend,
    pairs: Sequence[tuple[AnyTask, NewTask]],
    dependencies: Sequence[Dependency],
    group: GroupSpec | None = None,
) -> list[TaskResult[Any, Any]]:
    broker = backend.broker
    broker.push_workflow([new for _, new in pairs], dependencies, group)
    waiting = {d.task_id for d in dependencies}
    if queues := sorted({new.queue_name for _, new in pairs if new.id not in waiting}):
        backend.wake_after_store(queues)
    results = [backend._result_for(task, new) for task, new in pairs]
    for result in results:
        task_enqueued.send(type(backend), task_result=result)
    return results


def enqueue_after(
    parents: Sequence[TaskResult[Any, Any] | str],
    task: AnyTask,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    on_parent_failure: str = "fail",
) -> TaskResult[Any, Any]:
    """Enqueue ``task`` to run once every task in ``parents`` has finished.

    ``parents`` are TaskResults or ids of tasks of the same backend. Every parent SUCCESSFUL:
    the task runs. A parent FAILED (a cancelled READY parent is FAILED too): with
    ``on_parent_failure="fail"`` the task ends FAILED with ``DependencyFailed`` without running;
    with ``"run"`` it runs anyway. Retries of a parent keep it waiting. In a ``takes_context``
    task, ``context.parent_results`` holds the parents' results in the order given.
    """
    if on_parent_failure not in ON_PARENT_FAILURE:
        raise ValueError(f"on_parent_failure must be 'fail' or 'run', got {on_parent_failure!r}.")
    if isinstance(parents, TaskResult | str) or not isinstance(parents, Sequence):
        raise TypeError(
            f"enqueue_after() parents must be a list of TaskResults or task ids, got {parents!r}."
        )
    if not parents:
        raise ValueError("enqueue_after() needs at least one parent; use task.enqueue() instead.")
    ids = list(dict.fromkeys(_parent_id(p, task.backend, n) for n, p in enumerate(parents)))
    backend = _backend(task.backend)
    new = _new_task(backend, task, args, dict(kwargs or {}))
    dependency = Dependency(
        task_id=new.id, parent_ids=tuple(ids), on_parent_failure=on_parent_failure
    )
    [result] = _store(backend, [(task, new)], [dependency])
    return result


def chain(steps: Sequence[Step]) -> list[TaskResult[Any, Any]]:
    """Store ``steps`` — ``(task, args, kwargs)`` triples — at once; step k+1 runs after step k
    SUCCEEDED, with step k's return value as its first positional argument. A failed step ends
    every later step FAILED with ``DependencyFailed``. Returns the steps' results in order."""
    if isinstance(steps, str) or not isinstance(steps, Sequence) or not steps:
        raise ValueError(f"chain() needs a non-empty list of (task, args, kwargs), got {steps!r}.")
    triples = [_step(item, f"chain() step {n}") for n, item in enumerate(steps)]
    alias = _same_backend([t for t, _, _ in triples], "chain()")
    backend = _backend(alias)
    pairs = [(task, _new_task(backend, task, args, kwargs)) for task, args, kwargs in triples]
    dependencies = [
        Dependency(task_id=new.id, parent_ids=(before.id,), pass_result=True)
        for (_, before), (_, new) in itertools.pairwise(pairs)
    ]
    return _store(backend, pairs, dependencies)


@dataclass(frozen=True, slots=True)
class Group:
    """A group of tasks (``tandem.group``). ``results`` are read afresh at each access."""

    id: str
    backend: str
    member_ids: tuple[str, ...]
    then_id: str | None = None

    @property
    def results(self) -> list[TaskResult[Any, Any]]:
        backend = _backend(self.backend)
        return [backend.get_result(i) for i in self.member_ids]

    @property
    def then_result(self) -> TaskResult[Any, Any] | None:
        """The ``then`` task's result (None: the group has no callback)."""
        return None if self.then_id is None else _backend(self.backend).get_result(self.then_id)

    @property
    def total(self) -> int:
        return len(self.member_ids)

    @property
    def done(self) -> int:
        """How many members have finished (SUCCESSFUL or FAILED), counted by the store."""
        return _backend(self.backend).broker.finished_count(self.member_ids)

    @property
    def finished(self) -> bool:
        return self.done == self.total

    @property
    def successful(self) -> bool:
        """Every member SUCCESSFUL (read afresh; stops at the first that is not)."""
        backend = _backend(self.backend)
        return all(
            backend.get_result(i).status == TaskResultStatus.SUCCESSFUL for i in self.member_ids
        )


def group(items: Sequence[Step], then: AnyTask | None = None) -> Group:
    """Store ``items`` — ``(task, args, kwargs)`` triples — and ``then`` at once.

    ``then`` is enqueued exactly once after every item finished, whatever their status, with
    the group id as its only argument (it is stored now, waiting, and the write that finishes
    the last item makes it claimable: no second copy can ever be made).
    """
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise TypeError(f"group() items must be a list of (task, args, kwargs), got {items!r}.")
    triples = [_step(item, f"group() item {n}") for n, item in enumerate(items)]
    tasks = [t for t, _, _ in triples] + ([then] if then is not None else [])
    if not tasks:
        raise ValueError("group() needs at least one item or a then task.")
    alias = _same_backend(tasks, "group()")
    backend = _backend(alias)
    group_id = str(uuid.uuid4())
    checked: set[int] = set()
    pairs = [
        (task, _new_task(backend, task, args, kwargs, checked)) for task, args, kwargs in triples
    ]
    members = tuple(new.id for _, new in pairs)
    dependencies = []
    then_id = None
    if then is not None:
        then_new = _new_task(backend, then, [group_id], {})
        then_id = then_new.id
        pairs.append((then, then_new))
        dependencies.append(
            Dependency(task_id=then_id, parent_ids=members, on_parent_failure="run")
        )
    spec = GroupSpec(
        id=group_id,
        backend=alias,
        created_at=timezone.now(),
        member_ids=members,
        then_id=then_id,
    )
    _store(backend, pairs, dependencies, spec)
    return Group(id=group_id, backend=alias, member_ids=members, then_id=then_id)


def get_group(group_id: str, backend: str = "default") -> Group:
    """The stored group ``group_id``; raises ``LookupError`` when the backend has none."""
    state = _backend(backend).broker.get_group(str(group_id))
    if state is None:
        raise LookupError(f"no group {group_id!r} in backend {backend!r}")
    return Group(
        id=state.id, backend=state.backend, member_ids=state.member_ids, then_id=state.then_id
    )


__all__ = ["Group", "chain", "enqueue_after", "get_group", "group"]

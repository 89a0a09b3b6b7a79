"""django-tandem: background tasks for Django's ``django.tasks`` API.

The public surface is deliberately small; everything else is private and may change.
"""

# ruff: noqa: E402  (the early start below runs before the package's own imports, on purpose)

from __future__ import annotations

# First of all: ``manage.py tandem serve`` (or ``worker``) starts its first worker interpreter
# setting Django up now, on another core, while this interpreter still imports (``early``).
from tandem.worker.pools import early as _early

_early.begin()

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from tandem.backends import tandem_backend as _backend
from tandem.cancellation import CancelOutcome
from tandem.scheduler.registry import schedule
from tandem.tasks import Task, task
from tandem.workflows import Group, chain, enqueue_after, get_group, group

if TYPE_CHECKING:
    from django.tasks import TaskResult

    from tandem.tasks import AnyTask

__version__ = "0.1.0"

__all__ = [
    "CancelOutcome",
    "Group",
    "Task",
    "__version__",
    "cancel",
    "chain",
    "enqueue_after",
    "enqueue_many",
    "enqueue_on_commit",
    "get_group",
    "get_progress",
    "group",
    "is_paused",
    "pause",
    "resume",
    "schedule",
    "task",
]


def enqueue_many(
    task: AnyTask, items: Iterable[tuple[Sequence[Any], dict[str, Any]]]
) -> list[TaskResult[Any, Any]]:
    """Enqueue ``task`` once per ``(args, kwargs)`` item, in one store round trip per batch.

    Returns the results in order; ``task_enqueued`` is sent for each. Nothing is stored when
    any item is invalid (not JSON, not a pair).
    """
    return _backend(task.backend).enqueue_many(task, items)


def cancel(result_id: str, backend: str = "default") -> CancelOutcome | Literal[False]:
    """Cancel a task, and say what happened.

    - ``CancelOutcome.CANCELLED``: the task was READY; it ended FAILED at once with a
      ``Cancelled`` error and will never run.
    - ``CancelOutcome.REQUESTED``: the task is RUNNING; it was asked to stop and runs on until
      its code checks ``context.cancelled`` (a process pool also kills it at its next heartbeat).
    - ``False``: the task is unknown or already finished; nothing changed.

    Both outcomes are truthy (``str`` enum members), so ``if tandem.cancel(id):`` still reads
    "the task was cancelled or asked to stop".
    """
    return _backend(backend).cancel(result_id)


def get_progress(result_id: str, backend: str = "default") -> Any:
    """What the task last saved with ``context.save_progress()`` (None when nothing)."""
    return getattr(_backend(backend).get_result(result_id), "progress", None)


def enqueue_on_commit(
    task: AnyTask,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    using: str | None = None,
) -> None:
    """Enqueue after the current transaction on database ``using`` commits (at once outside one).

    For backends whose store is not the database (Redis): the task is not enqueued when the
    transaction rolls back. Validation and JSON conversion happen now, so bad arguments raise
    here, not after the commit. (The database backend needs none of this: its enqueue is part
    of the transaction already.)
    """
    from django.db import transaction

    from tandem.serialization import arguments_to_json

    backend = _backend(task.backend)
    backend.validate_task(task)
    json_args, json_kwargs = arguments_to_json(list(args), dict(kwargs or {}))
    transaction.on_commit(lambda: task.enqueue(*json_args, **json_kwargs), using=using)


def pause(queue: str, backend: str = "default") -> bool:
    """Pause ``queue`` on every worker of ``backend``: its tasks wait READY (enqueueing goes on),
    running ones finish, none starts until ``resume(queue)``. Stored, so it survives restarts.

    Returns False when the queue was paused already. A name that is not in the backend's
    ``QUEUES`` raises ``ValueError``.
    """
    from tandem import pausing

    return bool(pausing.pause_queues(_backend(backend), [queue]))


def resume(queue: str, backend: str = "default") -> bool:
    """Resume a paused ``queue`` (its workers are woken at once); False when it was not paused."""
    from tandem import pausing

    return bool(pausing.resume_queues(_backend(backend), [queue]))


def is_paused(queue: str, backend: str = "default") -> bool:
    """Whether ``queue`` of ``backend`` is paused (read from the store)."""
    from tandem import pausing

    return pausing.is_paused(_backend(backend), queue)

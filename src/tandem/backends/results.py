"""Django's ``TaskResult`` as tandem makes it: ``TandemTaskResult`` (with ``progress``), the
result of a task just enqueued (``ready_result``), and the ``task_enqueued`` signal sent for it.
A result read back from a stored row is ``backends.base.to_task_result``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import TASK_REFRESH_ATTRS
from django.tasks.signals import log_task_enqueued, task_enqueued
from django.tasks.signals import logger as tasks_logger

from tandem.brokers.base import Unreadable
from tandem.tasks import AnyTask

type AnyResult = TaskResult[Any, Any]

#: What a decoded JSON value was, by its Python type (for messages about stored rows).
JSON_TYPES = {
    dict: "a JSON object",
    list: "a JSON array",
    str: "a JSON string",
    int: "a JSON number",
    float: "a JSON number",
    bool: "a JSON boolean",
    type(None): "JSON null",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TandemTaskResult(TaskResult):  # type: ignore[misc,type-arg]  # frozen and generic in Django
    """Django's ``TaskResult`` plus ``progress``: what the task last saved with
    ``context.save_progress()`` (None when it saved nothing)."""

    progress: Any = None

    def refresh(self) -> None:
        refreshed = self.task.get_backend().get_result(self.id)
        for attr in (*TASK_REFRESH_ATTRS, "progress"):
            object.__setattr__(self, attr, getattr(refreshed, attr, None))

    async def arefresh(self) -> None:
        refreshed = await self.task.get_backend().aget_result(self.id)
        for attr in (*TASK_REFRESH_ATTRS, "progress"):
            object.__setattr__(self, attr, getattr(refreshed, attr, None))


def unreadable_arguments(name: str, value: Any, kind: type) -> str:
    """Why a stored row's ``args`` (a JSON array) or ``kwargs`` (a JSON object) cannot be used."""
    wanted = "a JSON array" if kind is list else "a JSON object"
    shown = repr(value)
    if len(shown) > 200:
        shown = f"{shown[:200]}…"
    if isinstance(value, Unreadable):
        found = f"not valid JSON ({value.reason}): {shown}"
    else:
        found = f"{JSON_TYPES.get(type(value), type(value).__name__)} {shown}"
    return (
        f"The stored row's {name} must be {wanted}, but it is {found}; the row was tampered "
        "with or corrupted, and the task was not run."
    )


#: The fields ``ready_result`` sets: every field of ``TandemTaskResult`` (checked at import).
_READY_FIELDS = (
    "task",
    "id",
    "status",
    "enqueued_at",
    "started_at",
    "finished_at",
    "last_attempted_at",
    "args",
    "kwargs",
    "backend",
    "errors",
    "worker_ids",
    "_return_value",
    "progress",
)
_BUILD_READY = sorted(f.name for f in fields(TandemTaskResult)) == sorted(_READY_FIELDS)


def ready_result(
    task: AnyTask,
    task_id: str,
    enqueued_at: datetime,
    args: list[Any],
    kwargs: dict[str, Any],
    backend: str,
) -> AnyResult:
    """The result of a task just enqueued (READY): what ``TandemTaskResult(...)`` makes, built
    field by field. Django's ``__post_init__`` would pass ``args`` and ``kwargs`` through
    ``normalize_json``, which only copies values that are JSON read back already (as an
    enqueue's are) — most of the cost of a result in a bulk enqueue. Should Django's result grow
    a field, the constructor is used instead."""
    if not _BUILD_READY:
        return TandemTaskResult(
            task=task,
            id=task_id,
            status=TaskResultStatus.READY,
            enqueued_at=enqueued_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=backend,
            errors=[],
            worker_ids=[],
        )
    result = object.__new__(TandemTaskResult)
    put = object.__setattr__
    put(result, "task", task)
    put(result, "id", task_id)
    put(result, "status", TaskResultStatus.READY)
    put(result, "enqueued_at", enqueued_at)
    put(result, "started_at", None)
    put(result, "finished_at", None)
    put(result, "last_attempted_at", None)
    put(result, "args", args)
    put(result, "kwargs", kwargs)
    put(result, "backend", backend)
    put(result, "errors", [])
    put(result, "worker_ids", [])
    put(result, "_return_value", None)
    put(result, "progress", None)
    return result


def send_task_enqueued(sender: type, results: Sequence[AnyResult]) -> None:
    """Send Django's ``task_enqueued`` once for each of ``results``.

    When the only receiver is Django's own ``log_task_enqueued`` and its logger
    (``django.tasks``) logs nothing at DEBUG, each call would do nothing but find that out, so
    none is made (a third of a bulk enqueue's time otherwise). Any other receiver, or that
    logger at DEBUG, and every result is sent, one call each.
    """
    if not results:
        return
    try:
        receivers = task_enqueued._live_receivers(sender)
    except Exception:  # Django's private API changed: send, as Django would
        receivers = None
    if receivers == ([log_task_enqueued], []) and not tasks_logger.isEnabledFor(logging.DEBUG):
        return
    for result in results:
        task_enqueued.send(sender, task_result=result)


__all__ = [
    "JSON_TYPES",
    "AnyResult",
    "TandemTaskResult",
    "ready_result",
    "send_task_enqueued",
    "unreadable_arguments",
]

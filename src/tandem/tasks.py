"""tandem's ``Task``: Django's Task plus validated extras, and a decorator that works on Django 6.0.

On Django >= 6.1, ``@django.tasks.task(max_attempts=3)`` passes the extras to the backend's
``task_class`` (this class); ``tandem.task`` accepts them on every supported Django.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal, overload

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME, task_backends
from django.tasks import Task as DjangoTask
from django.tasks.base import DEFAULT_TASK_PRIORITY
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

type AnyTask = DjangoTask[Any, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Task(DjangoTask):  # type: ignore[type-arg]  # Django's Task is generic in the stubs only
    """A Django task with tandem's extras.

    ``max_attempts``: how many times the task may run when it raises (default: the pool's,
    itself 1 by default — Django's semantics: a task that raises is FAILED).
    """

    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.run_after, timedelta):
            # Django's docs allow a timedelta; its validation would crash on it.
            object.__setattr__(self, "run_after", timezone.now() + self.run_after)
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise InvalidTask(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}.")
        # Explicit base call: zero-argument super() breaks in slotted dataclasses before 3.14.
        DjangoTask.__post_init__(self)

    def using(
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: datetime | timedelta | None = None,
        backend: str | None = None,
    ) -> Task:
        """Like Django's ``using()``; ``run_after`` may also be a ``timedelta`` from now."""
        if isinstance(run_after, timedelta):
            run_after = timezone.now() + run_after
        return DjangoTask.using(  # type: ignore[return-value]
            self, priority=priority, queue_name=queue_name, run_after=run_after, backend=backend
        )


def copy_task(task: AnyTask, **changes: Any) -> AnyTask:
    """A copy of ``task`` with ``changes``, without re-running validation (for stored rows)."""
    clone = object.__new__(type(task))
    for f in fields(task):
        object.__setattr__(clone, f.name, changes.get(f.name, getattr(task, f.name)))
    return clone


@overload
def task[**P, R](function: Callable[P, R], /) -> DjangoTask[P, R]: ...
@overload
def task[**P, R](
    *,
    priority: int = ...,
    queue_name: str = ...,
    backend: str = ...,
    takes_context: Literal[False] = ...,
    max_attempts: int | None = ...,
) -> Callable[[Callable[P, R]], DjangoTask[P, R]]: ...
@overload
def task[R](
    *,
    priority: int = ...,
    queue_name: str = ...,
    backend: str = ...,
    takes_context: Literal[True],
    max_attempts: int | None = ...,
) -> Callable[[Callable[..., R]], DjangoTask[..., R]]: ...
def task(
    function: Callable[..., Any] | None = None,
    *,
    priority: int = DEFAULT_TASK_PRIORITY,
    queue_name: str = DEFAULT_TASK_QUEUE_NAME,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    takes_context: bool = False,
    **extras: Any,
) -> AnyTask | Callable[[Callable[..., Any]], AnyTask]:
    """``django.tasks.task`` with tandem's extras, on every Django this project supports."""
    if "run_after" in extras:
        raise TypeError(
            "run_after cannot be defined statically with the @task decorator. "
            "Use .using(run_after=...) to set it dynamically."
        )

    def wrapper(func: Callable[..., Any]) -> AnyTask:
        task_class = task_backends[backend].task_class
        if extras and not issubclass(task_class, Task):
            raise InvalidTask(
                f"Task options {', '.join(sorted(extras))} need a tandem backend; "
                f"TASKS[{backend!r}] uses {task_class.__module__}.{task_class.__qualname__}."
            )
        return task_class(  # type: ignore[no-any-return,call-arg]
            func=func,
            priority=priority,
            queue_name=queue_name,
            backend=backend,
            takes_context=takes_context,
            run_after=None,
            **extras,
        )

    if function is not None:
        return wrapper(function)
    return wrapper

"""tandem's ``Task``: Django's Task plus validated extras, and a decorator that works on Django 6.0.

On Django >= 6.1, ``@django.tasks.task(max_attempts=3)`` passes the extras to the backend's
``task_class`` (this class); ``tandem.task`` accepts them on every supported Django.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal, overload

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME, task_backends
from django.tasks import Task as DjangoTask
from django.tasks.base import DEFAULT_TASK_PRIORITY
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

from tandem.rates import InvalidRate, normalize

type AnyTask = DjangoTask[Any, Any]
#: ``backoff``: seconds (the base of exponential back-off with jitter) or ``(attempt) -> seconds``.
type Backoff = float | Callable[[int], float]
#: ``unique_key``: ``(*args, **kwargs) -> str``, called with the task's arguments.
type UniqueKey = Callable[..., str]
#: ``concurrency_key``: a key, or ``(*args, **kwargs) -> str`` called with the task's arguments.
type ConcurrencyKey = str | Callable[..., str]
#: ``on_limit``: what a task does when its concurrency key is full.
type OnLimit = Literal["wait", "discard"]
#: The longest concurrency key stored (the database column's length).
MAX_CONCURRENCY_KEY = 255
#: ``on_success`` / ``on_failure``: a task, or its dotted path (enqueued with the result's id).
type Hook = AnyTask | str


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Task(DjangoTask):  # type: ignore[type-arg]  # Django's Task is generic in the stubs only
    """A Django task with tandem's extras (see ``docs/reference/tasks.md``).

    ``max_attempts``: how many times the task may run when it raises (default: the pool's,
    itself 1 by default — Django's semantics: a task that raises is FAILED).
    ``backoff``: the delay before a retry: seconds, the base of exponential back-off with jitter,
    or a callable ``(attempt) -> seconds`` (default: the pool's).
    ``timeout``: seconds an attempt may run (default: the pool's).
    ``unique``: while an equal task (same task, same arguments) is READY or RUNNING, enqueueing
    returns its result instead of storing another. ``unique_key``: a callable
    ``(*args, **kwargs) -> str`` that says which arguments make tasks equal (implies ``unique``).
    ``on_success`` / ``on_failure``: a task (or its dotted path) enqueued with the finished
    result's id as its only argument.
    ``concurrency_key`` (a string, or a callable ``(*args, **kwargs) -> str``) /
    ``concurrency_limit`` (default 1) / ``on_limit`` (``"wait"`` or ``"discard"``): at most
    ``concurrency_limit`` tasks with one key RUNNING at once, across every worker.
    ``rate_limit``: ``"N/s"``, ``"N/m"`` or ``"N/h"`` — at most N starts of this task in any
    window of that length, across every worker; a task over its rate waits READY.
    """

    max_attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    unique: bool = False
    unique_key: UniqueKey | None = None
    on_success: Hook | None = None
    on_failure: Hook | None = None
    concurrency_key: ConcurrencyKey | None = None
    concurrency_limit: int | None = None
    on_limit: OnLimit = "wait"
    rate_limit: str | None = None

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
        if self.backoff is not None and not (callable(self.backoff) or _is_seconds(self.backoff)):
            raise InvalidTask(
                "backoff must be a number of seconds > 0 or a callable (attempt) -> seconds, "
                f"got {self.backoff!r}."
            )
        if self.timeout is not None and not _is_seconds(self.timeout):
            raise InvalidTask(f"timeout must be a number of seconds > 0, got {self.timeout!r}.")
        if not isinstance(self.unique, bool):
            raise InvalidTask(f"unique must be True or False, got {self.unique!r}.")
        if self.unique_key is not None and not callable(self.unique_key):
            raise InvalidTask(
                f"unique_key must be a callable (*args, **kwargs) -> str, got {self.unique_key!r}."
            )
        for name in ("on_success", "on_failure"):
            hook = getattr(self, name)
            if hook is not None and not (
                isinstance(hook, DjangoTask) or (isinstance(hook, str) and "." in hook)
            ):
                raise InvalidTask(
                    f"{name} must be a task or its dotted path ('app.tasks.name'), got {hook!r}."
                )
        self._check_concurrency()
        if self.rate_limit is not None:
            try:
                object.__setattr__(self, "rate_limit", normalize(self.rate_limit))
            except InvalidRate as exc:
                raise InvalidTask(f"rate_limit {exc}") from None
        # Explicit base call: zero-argument super() breaks in slotted dataclasses before 3.14.
        DjangoTask.__post_init__(self)

    def _check_concurrency(self) -> None:
        key, limit = self.concurrency_key, self.concurrency_limit
        if key is not None and not callable(key):
            _check_concurrency_key(key, "concurrency_key must be")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidTask(f"concurrency_limit must be an integer >= 1, got {limit!r}.")
        if self.on_limit not in ("wait", "discard"):
            raise InvalidTask(f"on_limit must be 'wait' or 'discard', got {self.on_limit!r}.")
        if key is None and (limit is not None or self.on_limit != "wait"):
            given = "concurrency_limit" if limit is not None else "on_limit"
            raise InvalidTask(f"{given} needs a concurrency_key (the tasks it limits).")

    def concurrency_for(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
        """The concurrency key of a call with these (JSON) arguments, or None. A key callable
        that raises raises to the caller (nothing is stored)."""
        key = self.concurrency_key
        if key is None:
            return None
        if callable(key):
            key = key(*args, **kwargs)
            _check_concurrency_key(key, f"concurrency_key of {self.module_path} must return")
        return key

    def key_for(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
        """The stored uniqueness key for a call with these (JSON) arguments, or None."""
        if self.unique_key is not None:
            raw = self.unique_key(*args, **kwargs)
            if not isinstance(raw, str):
                raise InvalidTask(
                    f"unique_key of {self.module_path} must return a str, got {raw!r}."
                )
            material = raw
        elif self.unique:
            material = json.dumps([list(args), dict(kwargs)], sort_keys=True)
        else:
            return None
        return hashlib.sha256(f"{self.module_path}\0{material}".encode()).hexdigest()

    def retry_delay(self, attempt: int) -> float | None:
        """Seconds before the retry after failed attempt ``attempt``, when this task says."""
        from tandem.retries import backoff_delay

        if self.backoff is None:
            return None
        if callable(self.backoff):
            seconds = self.backoff(attempt)
            if not (_is_seconds(seconds) or (type(seconds) in (int, float) and seconds == 0)):
                raise InvalidTask(
                    f"backoff of {self.module_path} returned {seconds!r}; it must return a "
                    "number of seconds >= 0."
                )
            return float(seconds)
        return backoff_delay(attempt, float(self.backoff)).total_seconds()

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


def _check_concurrency_key(key: object, problem: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_CONCURRENCY_KEY:
        raise InvalidTask(
            f"{problem} a non-empty str of at most {MAX_CONCURRENCY_KEY} characters "
            f"(or a callable (*args, **kwargs) -> str), got {key!r}."
            if problem.endswith("be")
            else f"{problem} a non-empty str of at most {MAX_CONCURRENCY_KEY} characters, "
            f"got {key!r}."
        )
    return key


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
    backoff: Backoff | None = ...,
    timeout: float | None = ...,
    unique: bool = ...,
    unique_key: UniqueKey | None = ...,
    on_success: Hook | None = ...,
    on_failure: Hook | None = ...,
    concurrency_key: ConcurrencyKey | None = ...,
    concurrency_limit: int | None = ...,
    on_limit: OnLimit = ...,
    rate_limit: str | None = ...,
) -> Callable[[Callable[P, R]], DjangoTask[P, R]]: ...
@overload
def task[R](
    *,
    priority: int = ...,
    queue_name: str = ...,
    backend: str = ...,
    takes_context: Literal[True],
    max_attempts: int | None = ...,
    backoff: Backoff | None = ...,
    timeout: float | None = ...,
    unique: bool = ...,
    unique_key: UniqueKey | None = ...,
    on_success: Hook | None = ...,
    on_failure: Hook | None = ...,
    concurrency_key: ConcurrencyKey | None = ...,
    concurrency_limit: int | None = ...,
    on_limit: OnLimit = ...,
    rate_limit: str | None = ...,
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

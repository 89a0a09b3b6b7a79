"""Defining tasks: ``validate_task``'s rules and exact messages, capabilities, tandem's extras."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.tasks import TaskResultStatus, task, task_backends
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from django.tasks.exceptions import InvalidTask
from django.utils import timezone
from django.utils.module_loading import import_string

import tandem
from tandem.backends.base import TandemBackend
from tests import tasks
from tests.support import needs_django_task_class

PRIORITY_MESSAGE = (
    f"priority must be a whole number between {TASK_MIN_PRIORITY} and {TASK_MAX_PRIORITY}."
)

#: The decorators that take tandem's extras: tandem.task always, Django's @task from 6.1 on.
WITH_EXTRAS = [
    pytest.param(task, id="django", marks=needs_django_task_class),
    pytest.param(tandem.task, id="tandem"),
]


def module_function(value: int) -> int:
    return value


async def module_coroutine(value: int) -> int:
    return value


def context_first(context: Any, value: int) -> int:
    return value


def test_backend_declares_every_capability(backend: TandemBackend) -> None:
    assert backend.supports_defer is True
    assert backend.supports_async_task is True
    assert backend.supports_get_result is True
    assert backend.supports_priority is True


@pytest.mark.parametrize("decorator", [task, tandem.task], ids=["django", "tandem"])
def test_task_of_module_level_function(decorator: Any) -> None:
    defined = decorator(module_function)
    assert defined.func is module_function
    assert defined.module_path == f"{__name__}.module_function"
    assert isinstance(defined, tandem.Task)


@pytest.mark.parametrize("decorator", [task, tandem.task], ids=["django", "tandem"])
def test_task_refuses_functions_not_at_module_level(decorator: Any) -> None:
    def local_function() -> None: ...

    for function in (local_function, any, lambda: None):
        with pytest.raises(
            InvalidTask, match=r"^Task function must be defined at a module level\.$"
        ):
            decorator()(function)


def test_async_task_is_allowed() -> None:
    defined = task(module_coroutine)
    assert defined.func is module_coroutine


def test_takes_context_requires_a_first_argument_named_context() -> None:
    message = r"^Task takes context but does not have a first argument of 'context'\.$"
    with pytest.raises(InvalidTask, match=message):
        task(takes_context=True)(module_function)
    assert task(takes_context=True)(context_first).takes_context is True


@pytest.mark.parametrize("priority", [TASK_MIN_PRIORITY - 1, TASK_MAX_PRIORITY + 1, 3.1, 0.5])
def test_priority_outside_the_range_or_fractional_is_refused(priority: float) -> None:
    with pytest.raises(InvalidTask, match=f"^{re.escape(PRIORITY_MESSAGE)}$"):
        tasks.noop.using(priority=priority)  # type: ignore[arg-type]
    with pytest.raises(InvalidTask, match=f"^{re.escape(PRIORITY_MESSAGE)}$"):
        task(priority=priority)(module_function)  # type: ignore[arg-type]


@pytest.mark.parametrize("priority", [TASK_MIN_PRIORITY, -1, 0, 1, TASK_MAX_PRIORITY])
def test_priority_in_range_is_accepted(priority: int) -> None:
    assert tasks.noop.using(priority=priority).priority == priority


def test_run_after_must_be_aware_when_use_tz() -> None:
    with pytest.raises(InvalidTask, match=r"^run_after must be an aware datetime\.$"):
        tasks.noop.using(run_after=datetime.now())  # naive on purpose
    aware = datetime.now(UTC)
    assert tasks.noop.using(run_after=aware).run_after == aware


def test_unknown_queue_is_refused() -> None:
    with pytest.raises(InvalidTask, match=r"^Queue 'x' is not valid for backend\.$"):
        tasks.noop.using(queue_name="x")
    with pytest.raises(InvalidTask, match=r"^Queue 'x' is not valid for backend\.$"):
        task(queue_name="x")(module_function)
    assert tasks.noop.using(queue_name="critical").queue_name == "critical"


@pytest.mark.parametrize("decorator", WITH_EXTRAS)
def test_run_after_cannot_be_set_in_the_decorator(decorator: Any) -> None:
    with pytest.raises(TypeError, match=r"^run_after cannot be defined statically"):
        decorator(run_after=timezone.now())(module_function)


def test_using_accepts_a_timedelta_for_run_after() -> None:
    before = timezone.now()
    deferred = tasks.add.using(run_after=timedelta(minutes=5))
    after = timezone.now()
    assert isinstance(deferred.run_after, datetime)
    assert timezone.is_aware(deferred.run_after)
    assert before + timedelta(minutes=5) <= deferred.run_after <= after + timedelta(minutes=5)
    assert tasks.add.run_after is None


@pytest.mark.django_db(transaction=True)
def test_task_deferred_with_a_timedelta_is_not_run_yet(drain: Any) -> None:
    result = tasks.add.using(run_after=timedelta(hours=1)).enqueue(1, 2)
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.task.run_after is not None
    assert result.task.run_after > timezone.now()


@pytest.mark.parametrize("decorator", WITH_EXTRAS)
def test_max_attempts_extra(decorator: Any) -> None:
    defined = decorator(max_attempts=3)(module_function)
    assert isinstance(defined, tandem.Task)
    assert defined.max_attempts == 3
    assert defined.using(priority=5).max_attempts == 3
    assert decorator(module_function).max_attempts is None


@pytest.mark.parametrize("value", [0, -1, True, "3", 1.5])
@pytest.mark.parametrize("decorator", WITH_EXTRAS)
def test_invalid_max_attempts_is_refused(decorator: Any, value: object) -> None:
    message = f"max_attempts must be an integer >= 1, got {value!r}."
    with pytest.raises(InvalidTask, match=f"^{re.escape(message)}$"):
        decorator(max_attempts=value)(module_function)


@pytest.mark.django_db(transaction=True)
def test_max_attempts_retries_a_failing_task(drain: Any, backend: TandemBackend) -> None:
    result = tasks.flaky.enqueue("flaky-conformance", 1)
    assert backend.broker.get(result.id).max_attempts == 3  # type: ignore[union-attr]

    drain()
    result.refresh()
    assert result.status == TaskResultStatus.READY  # failed once, waiting for its retry
    assert [e.exception_class_path for e in result.errors] == ["builtins.RuntimeError"]
    first_started_at = result.started_at

    later = timezone.now() + timedelta(hours=1)  # past any back-off
    drain(clock=lambda: later)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 2
    assert result.attempts == 2
    assert len(result.errors) == 1
    assert result.started_at == first_started_at  # the first attempt's start
    assert result.last_attempted_at == later


def test_backend_init_touches_no_database(backend_path: str) -> None:
    # No django_db mark: pytest-django blocks every database access in this test.
    with pytest.raises(RuntimeError, match="Database access not allowed"):
        connection.ensure_connection()

    backend = import_string(backend_path)(
        "x", {"BACKEND": backend_path, "QUEUES": ["default", "other"], "OPTIONS": {}}
    )
    assert backend.alias == "x"
    assert backend.queues == {"default", "other"}
    backend.validate_task(tasks.add)
    assert task_backends["default"].alias == "default"  # built lazily by Django, also DB-free

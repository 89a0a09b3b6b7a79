"""Task options: validated with exact messages, accepted by ``tandem.task`` and by Django's
``@task`` (Django >= 6.1 passes extras to the backend's ``task_class``)."""

from __future__ import annotations

from typing import Any

import django
import pytest
from django.tasks import task as django_task
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

import tandem
from tandem.brokers.base import FAILED, READY, SUCCESSFUL
from tandem.models import TaskRecord
from tandem.tasks import Task
from tests.features import tasks as features
from tests.support.doubles import FrozenClock


def body() -> None:
    """A module-level function to decorate."""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be an integer >= 1, got 0."),
        ({"max_attempts": True}, "max_attempts must be an integer >= 1, got True."),
        (
            {"backoff": -1},
            "backoff must be a number of seconds > 0 or a callable (attempt) -> seconds, got -1.",
        ),
        (
            {"backoff": "fast"},
            "backoff must be a number of seconds > 0 or a callable (attempt) -> seconds, "
            "got 'fast'.",
        ),
        ({"timeout": 0}, "timeout must be a number of seconds > 0, got 0."),
        ({"timeout": float("inf")}, "timeout must be a number of seconds > 0, got inf."),
        ({"unique": "yes"}, "unique must be True or False, got 'yes'."),
        (
            {"unique_key": "user_id"},
            "unique_key must be a callable (*args, **kwargs) -> str, got 'user_id'.",
        ),
        (
            {"on_success": 42},
            "on_success must be a task or its dotted path ('app.tasks.name'), got 42.",
        ),
        (
            {"on_failure": "nodots"},
            "on_failure must be a task or its dotted path ('app.tasks.name'), got 'nodots'.",
        ),
    ],
)
@pytest.mark.parametrize(
    "decorator",
    [
        pytest.param(tandem.task, id="tandem"),
        pytest.param(
            django_task,
            id="django",
            marks=pytest.mark.skipif(
                django.VERSION < (6, 1), reason="Django 6.1 passes @task extras through"
            ),
        ),
    ],
)
def test_invalid_options_fail_with_exact_messages(
    decorator: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidTask) as caught:
        decorator(**options)(body)
    assert str(caught.value) == message


def test_valid_options_are_kept_on_the_task() -> None:
    def key(user_id: int) -> str:
        return str(user_id)

    made = tandem.task(
        max_attempts=4,
        backoff=1.5,
        timeout=30,
        unique_key=key,
        on_success="tests.tasks.record_hook",
    )(body)
    assert isinstance(made, Task)
    assert (made.max_attempts, made.backoff, made.timeout, made.unique_key) == (4, 1.5, 30, key)
    assert made.on_success == "tests.tasks.record_hook"


@pytest.mark.skipif(django.VERSION < (6, 1), reason="Django 6.1 passes @task extras through")
def test_djangos_own_decorator_passes_the_options_to_tandems_task_class() -> None:
    made = django_task(max_attempts=2, timeout=5)(body)  # type: ignore[call-arg]
    assert isinstance(made, Task)
    assert (made.max_attempts, made.timeout) == (2, 5)
    with pytest.raises(InvalidTask, match=r"timeout must be a number of seconds > 0, got -5\."):
        django_task(timeout=-5)(body)  # type: ignore[call-arg]


def test_unique_keys_depend_on_the_task_and_the_chosen_arguments() -> None:
    plain = tandem.task(unique=True)(body)
    assert plain.key_for([1], {"a": 2}) == plain.key_for([1], {"a": 2})
    assert plain.key_for([1], {"a": 2}) != plain.key_for([1], {"a": 3})
    by_user = tandem.task(unique_key=lambda user_id, **_: f"u{user_id}")(body)
    assert by_user.key_for([7], {"note": "x"}) == by_user.key_for([7], {"note": "y"})
    assert by_user.key_for([7], {}) != by_user.key_for([8], {})
    assert tandem.task(max_attempts=2)(body).key_for([1], {}) is None
    bad = tandem.task(unique_key=lambda *a: 7)(body)
    with pytest.raises(InvalidTask, match="must return a str, got 7"):
        bad.key_for([], {})


def test_callable_backoff_is_called_with_the_attempt_and_checked() -> None:
    seen: list[int] = []

    def backoff(attempt: int) -> float:
        seen.append(attempt)
        return 3.0 * attempt

    made = tandem.task(backoff=backoff)(body)
    assert made.retry_delay(2) == 6.0
    assert seen == [2]
    assert tandem.task(max_attempts=2)(body).retry_delay(1) is None
    exponential = tandem.task(backoff=10)(body)
    assert all(5.0 <= exponential.retry_delay(1) <= 10.0 for _ in range(20))  # jitter 0.5..1
    assert all(20.0 <= exponential.retry_delay(3) <= 40.0 for _ in range(20))
    negative = tandem.task(backoff=lambda attempt: -1)(body)
    with pytest.raises(InvalidTask, match="returned -1; it must return a number of seconds >= 0"):
        negative.retry_delay(1)


@pytest.mark.skipif(django.VERSION < (6, 1), reason="Django 6.1 passes @task extras through")
def test_the_features_tiers_django_tasks_are_made_by_djangos_decorator() -> None:
    """``tests/features/tasks.py`` defines these with ``django.tasks.task`` on Django >= 6.1."""
    assert features.extras_task is django_task
    assert isinstance(features.django_flaky, Task)
    assert features.django_flaky.max_attempts == 3
    assert features.django_flaky.retry_delay(2) == 100.0


@pytest.mark.django_db(transaction=True)
def test_a_task_made_by_djangos_decorator_is_retried_by_its_own_options(harness) -> None:
    clock = FrozenClock()
    result = features.django_flaky.enqueue("django-flaky", 1)  # fails once; backoff 50 s
    assert TaskRecord.objects.get(id=result.id).max_attempts == 3  # the task's, not the pool's 1
    supervisor = harness.supervisor(workers=1, clock=clock)
    assert supervisor.step() == 1
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    waiting = features.django_flaky.get_result(result.id)
    assert waiting.status == READY
    assert 45 < (waiting.task.run_after - timezone.now()).total_seconds() <= 50
    clock.move_to(waiting.task.run_after)
    clock.advance(supervisor.options.poll_interval)
    assert supervisor.step() == 1
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    result.refresh()
    assert (result.status, result.attempts, result.return_value) == (SUCCESSFUL, 2, 2)


@pytest.mark.django_db(transaction=True)
def test_a_timeout_given_to_djangos_decorator_stops_the_task(drain, tandem_settings) -> None:
    tandem_settings(pools={"default": {"workers": 1}})  # the pool has no timeout
    result = features.django_short_timeout.enqueue(3.0)
    drain()
    result.refresh()
    assert result.status == FAILED
    assert "longer than its timeout of 0.3s" in result.errors[0].traceback

"""tandem.Task and tandem.task: Django's Task with validated extras."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from django.tasks import Task as DjangoTask
from django.tasks import task as django_task
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

import tandem
from tandem.tasks import Task, copy_task
from tests import tasks
from tests.support import DJANGO_TASK_CLASS

#: Fields Django 6.0's Task has no defaults for (6.1 has), for building a Task directly.
DJANGO_60_FIELDS = {"queue_name": "default", "priority": 0, "run_after": None}


def sample(value: int = 0) -> int:
    return value


def other_sample() -> None:
    return None


def test_the_backend_task_class_is_tandems():
    plain = django_task(sample)

    assert type(plain) is Task
    assert plain.max_attempts is None


def test_django_task_decorator_passes_the_extras():
    if not DJANGO_TASK_CLASS:
        # Django 6.0's @task knows only its own fields: the extras need tandem.task there.
        with pytest.raises(TypeError, match="max_attempts"):
            django_task(max_attempts=4)(sample)
        return
    decorated = django_task(max_attempts=4)(sample)

    assert type(decorated) is Task
    assert decorated.max_attempts == 4


def test_tandem_task_decorator():
    decorated = tandem.task(max_attempts=2, queue_name="critical", priority=5)(sample)
    bare = tandem.task(other_sample)

    assert type(decorated) is Task
    assert (decorated.max_attempts, decorated.queue_name, decorated.priority) == (2, "critical", 5)
    assert decorated.func is sample
    assert decorated.run_after is None
    assert bare.max_attempts is None
    assert bare.func is other_sample
    assert tasks.flaky.max_attempts == 3


@pytest.mark.parametrize("value", [0, -1, True, False, "3", 2.0, 1.5])
def test_max_attempts_validation(value):
    message = f"max_attempts must be an integer >= 1, got {value!r}."

    with pytest.raises(InvalidTask) as by_decorator:
        tandem.task(max_attempts=value)(sample)
    with pytest.raises(InvalidTask) as direct:
        Task(**DJANGO_60_FIELDS, func=sample, backend="default", max_attempts=value)

    assert str(by_decorator.value) == str(direct.value) == message
    if DJANGO_TASK_CLASS:
        with pytest.raises(InvalidTask) as by_django_decorator:
            django_task(max_attempts=value)(sample)
        assert str(by_django_decorator.value) == message


def test_run_after_cannot_be_static():
    with pytest.raises(TypeError, match=r"^run_after cannot be defined statically"):
        tandem.task(run_after=timedelta(seconds=5))(sample)


def test_extras_need_a_tandem_backend(settings):
    settings.TASKS = {
        **copy.deepcopy(settings.TASKS),
        "dummy": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
    }

    with pytest.raises(InvalidTask) as caught:
        tandem.task(backend="dummy", max_attempts=2)(sample)

    assert str(caught.value) == (
        "Task options max_attempts need a tandem backend; "
        "TASKS['dummy'] uses django.tasks.base.Task."
    )
    assert type(tandem.task(backend="dummy")(sample)) is DjangoTask


def test_using_accepts_a_timedelta():
    base = tandem.task(max_attempts=3)(sample)

    before = timezone.now()
    deferred = base.using(run_after=timedelta(minutes=5))
    after = timezone.now()

    assert type(deferred) is Task
    assert before + timedelta(minutes=5) <= deferred.run_after <= after + timedelta(minutes=5)
    assert timezone.is_aware(deferred.run_after)
    assert deferred.max_attempts == 3
    assert base.run_after is None


def test_using_passes_datetimes_and_other_changes_through():
    when = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    changed = tandem.task(sample).using(run_after=when, priority=7, queue_name="exports")

    assert (changed.run_after, changed.priority, changed.queue_name) == (when, 7, "exports")


def test_a_timedelta_run_after_given_directly():
    before = timezone.now()
    direct = Task(
        **{**DJANGO_60_FIELDS, "run_after": timedelta(seconds=90)}, func=sample, backend="default"
    )
    after = timezone.now()

    assert before + timedelta(seconds=90) <= direct.run_after <= after + timedelta(seconds=90)


def test_django_validation_still_runs():
    with pytest.raises(InvalidTask, match="priority must be a whole number between"):
        tandem.task(priority=1000)(sample)
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        tandem.task(sample).using(run_after=datetime(2030, 1, 1))


def test_copy_task_changes_fields_without_validation():
    original = tandem.task(max_attempts=2)(sample)

    # A stored row may carry values validation would refuse today (e.g. a naive datetime).
    naive = datetime(2030, 1, 1)
    copied = copy_task(original, run_after=naive, priority=3)

    assert type(copied) is Task
    assert (copied.run_after, copied.priority, copied.max_attempts) == (naive, 3, 2)
    assert copied.func is sample
    assert original.priority == 0

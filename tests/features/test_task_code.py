"""Where a task's code lives: ``enqueue()`` refuses a task no worker would import, and
``get_result()`` answers for a stored task whose code moved or vanished."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.tasks import TaskResultStatus
from django.tasks.exceptions import InvalidTask
from django.test import override_settings

from tandem.models import TaskRecord
from tests import tasks

pytestmark = pytest.mark.django_db(transaction=True)

APPS = (
    "django.contrib.admin, django.contrib.auth, django.contrib.contenttypes, "
    "django.contrib.messages, django.contrib.sessions, tandem, tests"
)


@pytest.fixture
def outside_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A module ``scratch_jobs`` with a task, importable here but in no installed app."""
    (tmp_path / "scratch_jobs.py").write_text(
        "from django.tasks import task\n\n@task\ndef hello():\n    return 'hi'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import scratch_jobs  # type: ignore[import-not-found]

    yield scratch_jobs
    sys.modules.pop("scratch_jobs", None)


def test_enqueue_refuses_a_task_no_worker_would_import(outside_module) -> None:
    with pytest.raises(InvalidTask) as caught:
        outside_module.hello.enqueue()

    assert str(caught.value) == (
        "Task 'scratch_jobs.hello' cannot be enqueued: a worker imports task modules only from "
        f"the packages of INSTALLED_APPS and the package of DJANGO_SETTINGS_MODULE ({APPS}), "
        "and its module 'scratch_jobs' is in none of them, so no worker would ever run it. Move "
        "the task into a module of an installed app (e.g. yourapp/tasks.py), or add its package "
        "to INSTALLED_APPS."
    )
    assert not TaskRecord.objects.filter(task_path="scratch_jobs.hello").exists()


def test_get_result_of_a_task_whose_code_vanished(drain) -> None:
    result = tasks.add.enqueue(1, 2)
    TaskRecord.objects.filter(id=result.id).update(task_path="tests.tasks.gone_since")

    waiting = tasks.add.get_backend().get_result(result.id)  # never raises
    assert waiting.status == TaskResultStatus.READY
    assert waiting.task.module_path == "tests.tasks.gone_since"
    assert waiting.args == [1, 2]

    drain()
    failed = tasks.add.get_backend().get_result(result.id)

    assert failed.status == TaskResultStatus.FAILED
    [error] = failed.errors
    assert error.exception_class_path == "tandem.exceptions.TaskNotRunnable"
    assert error.traceback.rstrip().endswith(
        "tandem.exceptions.TaskNotRunnable: Task path 'tests.tasks.gone_since' does not import: "
        'Module "tests.tasks" does not define a "gone_since" attribute/class.'
    )
    failed.refresh()
    assert failed.status == TaskResultStatus.FAILED


def test_a_task_is_checked_once_per_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = tasks.noop.get_backend()
    calls = []
    validate = backend.validate_task
    monkeypatch.setattr(backend, "validate_task", lambda task: calls.append(task) or validate(task))
    tasks.noop.enqueue()
    tasks.noop.enqueue()
    assert len(calls) <= 1  # once, or none: an earlier enqueue() of this backend checked it
    other = tasks.noop.using(priority=3)  # another task object (Django validates it as made)
    calls.clear()
    other.enqueue()
    other.enqueue()
    assert len(calls) == 1 and calls[0] is other


def test_a_checked_task_is_checked_again_when_the_installed_apps_change(
    outside_module, settings
) -> None:
    with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "scratch_jobs"]):
        assert outside_module.hello.enqueue().status == TaskResultStatus.READY
    with pytest.raises(InvalidTask, match="cannot be enqueued"):
        outside_module.hello.enqueue()

"""resolve_task: a stored row can only name a registered Task, by its own module path."""

from __future__ import annotations

import sys

import pytest
from django.tasks.exceptions import TaskException

from tandem.backends.base import resolve_task
from tandem.exceptions import TaskNotRunnable
from tests import tasks
from tests.tasks import add as add_under_another_path  # noqa: F401 — resolved by path below

NOT_A_TASK = "not a Task; only functions decorated with @task can be run from a stored row."


def refusal(task_path: str) -> str:
    with pytest.raises(TaskNotRunnable) as caught:
        resolve_task(task_path)
    return str(caught.value)


def test_accepts_a_registered_task():
    assert resolve_task("tests.tasks.add") is tasks.add
    assert resolve_task("tests.tasks.flaky") is tasks.flaky
    assert resolve_task("tests.tasks.async_add") is tasks.async_add


def test_refuses_os_system():
    assert (
        refusal("os.system")
        == f"'os.system' is a builtins.builtin_function_or_method, {NOT_A_TASK}"
    )


def test_refuses_a_plain_function():
    assert refusal("tests.tasks.not_a_task") == (
        f"'tests.tasks.not_a_task' is a builtins.function, {NOT_A_TASK}"
    )


@pytest.mark.parametrize("task_path", ["builtins.eval", "tandem.tasks.Task", "tests.tasks.os"])
def test_refuses_anything_else(task_path):
    assert refusal(task_path).startswith(f"{task_path!r} is a ")


NOT_INSTALLED = (
    "is not in an installed app or the project's package; tandem imports task modules only "
    "from INSTALLED_APPS and the package of DJANGO_SETTINGS_MODULE (or modules already imported)."
)


@pytest.mark.parametrize("task_path", ["no_such_module.task", "add", "antigravity.fly"])
def test_refuses_modules_outside_installed_apps_without_importing_them(task_path):
    module = task_path.rpartition(".")[0]
    assert module not in sys.modules

    assert refusal(task_path) == f"Task path {task_path!r} {NOT_INSTALLED}"
    assert module not in sys.modules


@pytest.mark.parametrize(
    ("task_path", "reason"),
    [
        ("tests.no_such_module.task", "No module named 'tests.no_such_module'"),
        ("tests.tasks.missing", 'Module "tests.tasks" does not define a "missing" attribute/class'),
    ],
)
def test_refuses_paths_in_installed_apps_that_do_not_import(task_path, reason):
    assert refusal(task_path) == f"Task path {task_path!r} does not import: {reason}."


def test_refuses_a_task_named_by_another_path():
    task_path = f"{__name__}.add_under_another_path"

    assert refusal(task_path) == (
        f"{task_path!r} refers to the task 'tests.tasks.add'; "
        "a stored row must name a task by its own module path."
    )


def test_task_not_runnable_is_a_task_exception():
    assert issubclass(TaskNotRunnable, TaskException)

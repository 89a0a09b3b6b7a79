"""The ``django_tasks`` backport's ``@task`` builds its tasks with the configured backend's task
class, so a project (or a package such as Wagtail) that decorates with the backport gets tandem
tasks, tandem's extras included, and they run on tandem's workers."""

from __future__ import annotations

from typing import Any

import pytest
from django.tasks import TaskResultStatus

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_backport_decorator_makes_a_tandem_task() -> None:
    from tandem.tasks import Task
    from tests.compat.shop.tasks import backported

    assert isinstance(backported, Task)
    assert backported.max_attempts == 3  # a tandem extra, passed through the backport
    assert backported.module_path == "tests.compat.shop.tasks.backported"


def test_a_backport_task_is_stored_and_run_by_tandem(drain: Any, settings: Any) -> None:
    from tandem.models import TaskRecord
    from tests.compat.shop.tasks import backported

    tasks = {k: dict(v) for k, v in settings.TASKS.items()}
    tasks["default"]["OPTIONS"] = {}  # tandem's defaults: subinterpreters on Python 3.14
    settings.TASKS = tasks
    result = backported.enqueue("backport")
    assert TaskRecord.objects.get(id=result.id).max_attempts == 3
    drain()
    result = backported.get_result(result.id)
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert result.return_value["hello"] == "backport"

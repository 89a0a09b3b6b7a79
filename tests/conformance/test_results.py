"""Results after a worker ran the task: success, failure, refresh, and result lookups."""

from __future__ import annotations

from typing import Any

import pytest
from django.tasks import TaskResult, TaskResultStatus, task_backends
from django.tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch

from tandem.backends.base import TandemBackend
from tests import tasks
from tests.support.conformance import run_async

pytestmark = pytest.mark.django_db(transaction=True)  # pool threads use their own connections


def test_successful_result(drain: Any, backend: TandemBackend) -> None:
    result = tasks.add.enqueue(1, 2)
    supervisor = drain()

    fetched = tasks.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.is_finished is True
    assert fetched.return_value == 3
    assert fetched.errors == []
    assert fetched.worker_ids == [supervisor.worker_id]
    assert fetched.attempts == 1
    assert fetched.args == [1, 2]
    assert fetched.enqueued_at == result.enqueued_at
    assert fetched.started_at is not None
    assert fetched.last_attempted_at is not None
    assert fetched.finished_at is not None
    assert fetched.enqueued_at <= fetched.started_at
    assert fetched.started_at <= fetched.last_attempted_at <= fetched.finished_at


def test_failed_result(drain: Any) -> None:
    result = tasks.fail.enqueue("the disk is on fire")
    drain()

    fetched = tasks.fail.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.is_finished is True
    assert fetched.attempts == 1
    assert len(fetched.worker_ids) == 1
    assert fetched.finished_at is not None
    assert fetched.started_at is not None
    assert fetched.started_at <= fetched.finished_at
    [error] = fetched.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "ValueError: the disk is on fire" in error.traceback
    assert error.traceback.startswith("Traceback (most recent call last):")
    with pytest.raises(ValueError, match=r"^Task failed$"):
        fetched.return_value  # noqa: B018


def test_ready_result_has_no_return_value() -> None:
    result = tasks.add.enqueue(1, 2)
    assert result.is_finished is False
    with pytest.raises(ValueError, match=r"^Task has not finished yet$"):
        result.return_value  # noqa: B018
    with pytest.raises(ValueError, match=r"^Task has not finished yet$"):
        tasks.add.get_result(result.id).return_value  # noqa: B018


def test_task_returning_none_is_successful(drain: Any) -> None:
    result = tasks.noop.enqueue()
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value is None


def test_refresh_updates_the_result_in_place(drain: Any) -> None:
    result = tasks.echo.enqueue(1, (2,), key="value")
    original_id, original_args = result.id, result.args
    drain()

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"args": [1, [2]], "kwargs": {"key": "value"}}
    assert result.finished_at is not None
    assert result.attempts == 1
    assert (result.id, result.args) == (original_id, original_args)
    assert result == tasks.echo.get_result(result.id)


def test_arefresh_updates_the_result_in_place(drain: Any) -> None:
    result = tasks.fail.enqueue()
    drain()

    run_async(result.arefresh)
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"]
    assert result.attempts == 1


def test_result_task_is_the_enqueued_task(drain: Any) -> None:
    result = tasks.add.using(priority=9).enqueue(4, 5)
    drain()
    fetched = tasks.add.get_result(result.id)
    assert fetched.task.func is tasks.add.func
    assert fetched.task == tasks.add.using(priority=9)
    assert fetched.task.module_path == "tests.tasks.add"


def test_get_result_of_another_task_raises_mismatch(backend: TandemBackend) -> None:
    result = tasks.add.enqueue(1, 2)
    message = r"^Task does not match \(received 'tests\.tasks\.add'\)$"
    with pytest.raises(TaskResultMismatch, match=message):
        tasks.noop.get_result(result.id)
    with pytest.raises(TaskResultMismatch, match=message):
        run_async(tasks.noop.aget_result, result.id)


def test_async_enqueue_run_and_arefresh(drain: Any) -> None:
    async def enqueue() -> TaskResult:
        return await tasks.async_add.aenqueue(20, 22)

    result = run_async(enqueue)
    assert result.status == TaskResultStatus.READY
    drain()
    run_async(result.arefresh)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    fetched = run_async(tasks.async_add.aget_result, result.id)
    assert fetched == result


def test_backend_aliases_do_not_share_tasks(drain: Any, settings: Any) -> None:
    settings.TASKS = {**settings.TASKS, "other": dict(settings.TASKS["default"])}
    result = tasks.add.using(backend="other").enqueue(1, 2)
    assert result.backend == "other"
    assert task_backends["other"].get_result(result.id) == result
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(result.id)

    drain()  # a worker of "default"
    result.refresh()
    assert result.status == TaskResultStatus.READY

    drain(backend_alias="other")
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3

"""Enqueueing: the READY result, JSON-only arguments, transactions, async, unknown ids."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from tandem.backends.base import TandemBackend
from tandem.serialization import NotJSONError
from tests import tasks
from tests.support.conformance import capture, run_async, stored_count

pytestmark = pytest.mark.django_db


def test_enqueue_returns_a_ready_result() -> None:
    before = timezone.now()
    result = tasks.add.enqueue(1, b=2)
    after = timezone.now()

    assert isinstance(result, TaskResult)
    assert isinstance(result.id, str)
    assert result.id
    assert result.status == TaskResultStatus.READY
    assert result.task == tasks.add
    assert result.backend == "default"
    assert result.enqueued_at is not None
    assert before <= result.enqueued_at <= after
    assert result.started_at is None
    assert result.last_attempted_at is None
    assert result.finished_at is None
    assert result.args == [1]
    assert result.kwargs == {"b": 2}
    assert result.errors == []
    assert result.worker_ids == []
    assert result.attempts == 0
    assert result.is_finished is False


def test_each_enqueue_gets_its_own_id() -> None:
    ids = {tasks.noop.enqueue().id for _ in range(3)}
    assert len(ids) == 3


def test_arguments_are_normalised_to_json() -> None:
    result = tasks.echo.enqueue((1, 2), {"a": (3, (4,))}, key=(5,), flag=True, none=None)
    assert result.args == [[1, 2], {"a": [3, [4]]}]
    assert result.kwargs == {"key": [5], "flag": True, "none": None}
    stored = tasks.echo.get_result(result.id)
    assert stored.args == result.args
    assert stored.kwargs == result.kwargs


@pytest.mark.parametrize(
    "make_task",
    [
        lambda: tasks.add,
        lambda: tasks.add.using(priority=7, queue_name="critical"),
        lambda: tasks.add.using(run_after=datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)),
    ],
    ids=["plain", "priority-and-queue", "run-after"],
)
def test_stored_result_equals_the_returned_one(make_task: Any, backend: TandemBackend) -> None:
    task = make_task()
    result = task.enqueue(2, b=3)
    assert backend.get_result(result.id) == result
    fetched = task.get_result(result.id)
    assert fetched == result
    assert fetched.task == task
    assert fetched.task.func is tasks.add.func


NOT_JSON = [
    pytest.param(
        (datetime(2030, 1, 1, tzinfo=UTC),), {}, "args[0] is a datetime.datetime", id="datetime"
    ),
    pytest.param((object(),), {}, "args[0] is a builtins.object", id="object"),
    pytest.param((1, math.nan), {}, "args[1] is nan", id="nan"),
    pytest.param((), {"tags": {"a", "b"}}, "kwargs['tags'] is a builtins.set", id="set"),
    pytest.param(
        ([1, {"when": timedelta(1)}],),
        {},
        "args[0][1]['when'] is a datetime.timedelta",
        id="nested",
    ),
]


@pytest.mark.parametrize(("args", "kwargs", "problem"), NOT_JSON)
def test_non_json_arguments_fail_at_enqueue(
    args: tuple[Any, ...], kwargs: dict[str, Any], problem: str, backend: TandemBackend
) -> None:
    with capture(task_enqueued) as sent, pytest.raises(NotJSONError, match=re.escape(problem)):
        tasks.echo.enqueue(*args, **kwargs)
    assert issubclass(NotJSONError, TypeError)
    assert sent == []
    assert stored_count(backend) == 0


def test_non_json_arguments_fail_at_aenqueue(backend: TandemBackend) -> None:
    async def enqueue() -> None:
        await tasks.echo.aenqueue(when=datetime(2030, 1, 1, tzinfo=UTC))

    with pytest.raises(NotJSONError, match=re.escape("kwargs['when'] is a datetime.datetime")):
        run_async(enqueue)
    assert stored_count(backend) == 0


class Rollback(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_enqueue_in_a_rolled_back_transaction(backend: TandemBackend) -> None:
    """A transactional backend stores the task with the caller's commit, or not at all; any
    other stores it at once, whatever the caller's transaction does (Django's semantics)."""
    with pytest.raises(Rollback), transaction.atomic():
        rolled_back = tasks.add.enqueue(1, 2)
        raise Rollback
    with transaction.atomic():
        committed = tasks.add.enqueue(3, 4)

    assert backend.get_result(committed.id).args == [3, 4]
    if backend.transactional_enqueue:
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(rolled_back.id)
        assert stored_count(backend) == 1
    else:
        assert backend.get_result(rolled_back.id).args == [1, 2]
        assert stored_count(backend) == 2


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_stores_only_committed_work(backend: TandemBackend) -> None:
    """What Django advises for every backend: enqueue from ``transaction.on_commit``."""
    with pytest.raises(Rollback), transaction.atomic():
        transaction.on_commit(lambda: tasks.add.enqueue(1, 2))
        raise Rollback
    assert stored_count(backend) == 0

    with transaction.atomic():
        transaction.on_commit(lambda: tasks.add.enqueue(3, 4))
        assert stored_count(backend) == 0
    assert stored_count(backend) == 1


@pytest.mark.django_db(transaction=True)
def test_aenqueue_and_aget_result(backend: TandemBackend) -> None:
    async def scenario() -> tuple[TaskResult, TaskResult, TaskResult]:
        result = await tasks.add.aenqueue(2, (3,))
        return result, await tasks.add.aget_result(result.id), await backend.aget_result(result.id)

    result, via_task, via_backend = run_async(scenario)
    assert isinstance(result.id, str)
    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at is not None
    assert result.args == [2, [3]]
    assert via_task == result
    assert via_backend == result
    assert backend.get_result(result.id) == result


#: Fixed values (never generated at import): pytest-xdist workers must collect the same test ids.
UNKNOWN_IDS = [
    "6561e225-f48f-487a-a3f8-d637a5758ba2",
    "not-a-uuid",
    "",
    "123",
    "0B4A8C7E1F2D4E6A9B3C5D7E8F9A1B2C",
]


@pytest.mark.parametrize("result_id", UNKNOWN_IDS)
def test_get_result_of_unknown_or_malformed_id(result_id: str, backend: TandemBackend) -> None:
    tasks.add.enqueue(1, 2)  # the store is not empty
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(result_id)
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result_id)

    with pytest.raises(TaskResultDoesNotExist):
        run_async(backend.aget_result, result_id)
    with pytest.raises(TaskResultDoesNotExist):
        run_async(tasks.add.aget_result, result_id)

"""Django's task signals: who sends them, when, and what the receiver sees."""

from __future__ import annotations

from typing import Any

import pytest
from django.tasks import TaskResultStatus, task_backends
from django.tasks.signals import task_enqueued, task_finished, task_started

from tandem.backends.base import TandemBackend
from tests import tasks
from tests.support.conformance import capture, run_async

pytestmark = pytest.mark.django_db(transaction=True)  # pool threads use their own connections


def test_task_enqueued_is_sent_by_the_backend_class(backend: TandemBackend) -> None:
    with capture(task_enqueued) as sent:
        result = tasks.add.enqueue(1, 2)
    assert backend is task_backends["default"]
    assert [(e["sender"], e["id"], e["status"]) for e in sent] == [
        (type(backend), result.id, TaskResultStatus.READY)
    ]


def test_task_enqueued_is_sent_by_aenqueue(backend: TandemBackend) -> None:
    async def enqueue() -> str:
        return (await tasks.add.aenqueue(1, 2)).id

    with capture(task_enqueued) as sent:
        result_id = run_async(enqueue)
    assert [(e["sender"], e["id"]) for e in sent] == [(type(backend), result_id)]


def test_started_and_finished_on_success(drain: Any, backend: TandemBackend) -> None:
    result = tasks.add.enqueue(1, 2)
    with capture(task_started) as started, capture(task_finished) as finished:
        drain()

    [start] = started
    assert start["sender"] is type(backend)
    assert start["id"] == result.id
    assert start["status"] == TaskResultStatus.RUNNING
    [finish] = finished
    assert finish["sender"] is type(backend)
    assert finish["id"] == result.id
    assert finish["status"] == TaskResultStatus.SUCCESSFUL
    assert finish["exc_type"] is None


def test_finished_on_failure_is_sent_while_handling_the_exception(
    drain: Any, backend: TandemBackend
) -> None:
    result = tasks.fail.enqueue("signal me")
    with capture(task_started) as started, capture(task_finished) as finished:
        drain()

    assert [(e["id"], e["status"]) for e in started] == [(result.id, TaskResultStatus.RUNNING)]
    [finish] = finished
    assert finish["sender"] is type(backend)
    assert finish["id"] == result.id
    assert finish["status"] == TaskResultStatus.FAILED
    assert finish["exc_type"] is ValueError  # sys.exc_info() inside the receiver

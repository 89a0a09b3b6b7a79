"""Django's task signals: who sends them, when, and what the receiver sees."""

from __future__ import annotations

from typing import Any

import pytest
from django.tasks import TaskResultStatus, task_backends
from django.tasks.signals import task_enqueued, task_finished, task_started

from tandem.backends.base import TandemBackend
from tests import tasks
from tests.support.conformance import capture, run_async, store_row
from tests.support.pools import EXECUTORS, pool

#: The executors that run tasks in this process: threads and subinterpreters (whose
#: ``task_started`` never reaches a receiver the test connects; their ``task_finished`` does).
IN_PROCESS = [e for e in EXECUTORS if e != "process"]

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


def test_finished_on_failure_carries_the_traceback_on_errors(
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
    # Sent by the worker once the ending is stored, outside the task's ``except`` block: the
    # traceback is on the result, not in sys.exc_info().
    assert finish["exc_type"] is None
    [traceback] = finish["errors"]
    assert "ValueError: signal me" in traceback
    assert finish["thread"] == "tandem-signals"


@pytest.mark.parametrize("executor", IN_PROCESS)
def test_a_task_finished_receiver_sees_the_ending_already_stored(
    executor: str, drain: Any, backend: TandemBackend, tandem_settings: Any
) -> None:
    """Saved, then signalled (as Django's database backend does): per attempt, retried too."""
    tandem_settings(pools=pool(executor, workers=1, max_attempts=2, backoff=3600))
    seen: dict[str, tuple[Any, Any, int]] = {}

    def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
        stored = backend.get_result(task_result.id)
        seen[task_result.id] = (task_result.status, stored.status, len(stored.errors))

    succeeded = tasks.add.enqueue(1, 2)
    retried = tasks.fail.enqueue("again")  # back to READY for an hour
    failed = store_row(backend, "tests.tasks.fail", ["for good"], max_attempts=1)
    task_finished.connect(receiver, weak=False, dispatch_uid="test-stored-first")
    try:
        drain()
    finally:
        task_finished.disconnect(dispatch_uid="test-stored-first")
    ok, bad = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED
    assert seen == {
        succeeded.id: (ok, ok, 0),
        retried.id: (bad, TaskResultStatus.READY, 1),  # sent for each attempt, with FAILED
        failed: (bad, bad, 1),
    }


def test_async_tasks_finish_through_the_same_place(drain: Any) -> None:
    """Coroutines run on the worker's event loop; their endings are signalled like any other."""
    succeeded = tasks.async_add.enqueue(1, 2)
    failed = tasks.async_fail.enqueue("async boom")
    with capture(task_finished) as finished:
        drain()
    assert sorted((e["id"], e["status"], e["thread"]) for e in finished) == sorted(
        [
            (succeeded.id, TaskResultStatus.SUCCESSFUL, "tandem-signals"),
            (failed.id, TaskResultStatus.FAILED, "tandem-signals"),
        ]
    )


def test_a_receiver_that_raises_is_logged_and_the_ending_stays(
    drain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: type, task_result: Any, **kwargs: Any) -> None:
        raise RuntimeError("a broken receiver")

    first = tasks.add.enqueue(1, 2)
    second = tasks.add.enqueue(3, 4)
    task_finished.connect(broken, weak=False, dispatch_uid="test-broken-receiver")
    try:
        with capture(task_finished) as finished:
            drain()
    finally:
        task_finished.disconnect(dispatch_uid="test-broken-receiver")
    # Both sent (the thread survived the first failure), to the other receivers too.
    assert sorted(e["id"] for e in finished) == sorted([first.id, second.id])
    first.refresh()
    assert first.status == TaskResultStatus.SUCCESSFUL
    failures = [r for r in caplog.records if r.name == "django.dispatch"]
    assert len(failures) == 2 and "a broken receiver" in failures[0].getMessage()

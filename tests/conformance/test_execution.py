"""How workers run tasks: context, coroutines, priority, run_after, queues, refusals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.tasks import TaskResultStatus
from django.tasks.signals import task_started
from django.utils import timezone

from tandem.backends.base import TandemBackend
from tests import tasks
from tests.models import Ledger
from tests.support.conformance import capture, store_row

pytestmark = pytest.mark.django_db(transaction=True)  # pool threads use their own connections


def test_takes_context_receives_the_task_context(drain: Any) -> None:
    result = tasks.with_context.enqueue(7)
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 1, "id": result.id, "status": "RUNNING", "value": 7}


def test_coroutine_task_runs(drain: Any) -> None:
    result = tasks.async_add.enqueue(2, 3)
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5


def test_higher_priority_runs_first(drain: Any) -> None:
    keys_by_priority = [("low", -50), ("mid", 0), ("high", 50), ("top", 100), ("bottom", -100)]
    results = {
        key: tasks.ledger.using(priority=priority).enqueue(key)
        for key, priority in keys_by_priority
    }
    drain(workers=1)

    assert list(Ledger.objects.order_by("id").values_list("key", flat=True)) == [
        "top",
        "high",
        "mid",
        "low",
        "bottom",
    ]
    started = []
    for key in ("top", "high", "mid", "low", "bottom"):
        results[key].refresh()
        assert results[key].status == TaskResultStatus.SUCCESSFUL
        started.append(results[key].started_at)
    assert started == sorted(started)


def test_run_after_in_the_future_waits_until_it_passes(drain: Any) -> None:
    run_after = timezone.now() + timedelta(hours=1)
    deferred = tasks.add.using(run_after=run_after).enqueue(1, 2)
    ready = tasks.add.enqueue(3, 4)

    drain()
    deferred.refresh()
    ready.refresh()
    assert ready.status == TaskResultStatus.SUCCESSFUL
    assert deferred.status == TaskResultStatus.READY
    assert deferred.task.run_after == run_after

    # A worker whose clock is past run_after runs it.
    drain(clock=lambda: run_after + timedelta(seconds=1))
    deferred.refresh()
    assert deferred.status == TaskResultStatus.SUCCESSFUL
    assert deferred.return_value == 3
    assert deferred.started_at is not None
    assert deferred.started_at >= run_after


def test_queue_name_is_respected(drain: Any) -> None:
    on_default = tasks.noop.enqueue()
    on_critical = tasks.noop.using(queue_name="critical").enqueue()
    declared_critical = tasks.critical_noop.enqueue()
    assert declared_critical.task.queue_name == "critical"

    drain(queues=["critical"])
    for result in (on_default, on_critical, declared_critical):
        result.refresh()
    assert on_default.status == TaskResultStatus.READY
    assert on_critical.status == TaskResultStatus.SUCCESSFUL
    assert declared_critical.status == TaskResultStatus.SUCCESSFUL
    assert declared_critical.return_value == "critical"
    assert tasks.noop.get_result(on_critical.id).task.queue_name == "critical"

    exports = tasks.noop.using(queue_name="exports").enqueue()
    drain(queues=["default"])
    on_default.refresh()
    exports.refresh()
    assert on_default.status == TaskResultStatus.SUCCESSFUL
    assert exports.status == TaskResultStatus.READY


def test_non_json_return_value_fails_the_task(drain: Any) -> None:
    result = tasks.return_not_json.enqueue()
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "tandem.serialization.NotJSONError"
    assert issubclass(error.exception_class, TypeError)
    assert "the return value is a builtins.object" in error.traceback


@pytest.mark.parametrize(
    "task_path",
    ["os.system", "does.not.exist.task", "tests.tasks.not_a_task", "tests.tasks"],
)
def test_stored_row_naming_no_task_fails_without_running(
    task_path: str, drain: Any, backend: TandemBackend, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    row_id = store_row(backend, task_path, args=[f"touch {marker}"], max_attempts=3)

    with capture(task_started) as started:
        drain()

    stored = backend.broker.get(row_id)
    assert stored is not None
    assert stored.status == TaskResultStatus.FAILED  # not retried, whatever max_attempts says
    assert stored.attempts == 1
    [error] = stored.errors
    assert error.exception_class_path == "tandem.exceptions.TaskNotRunnable"
    assert task_path in error.traceback
    assert started == []
    assert not marker.exists()

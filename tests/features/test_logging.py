"""One log format for a worker: every record of an attempt carries its fields, and a retried
attempt logs its error in one line (the traceback stays on the result)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from tandem.logging import FIELDS, JsonFormatter
from tandem.models import TaskRecord
from tests import tasks
from tests.support.doubles import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record at INFO and above, formatted as it is made by a ``JsonFormatter`` handler
    on the root logger (as ``LOGGING`` would configure it)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def entries(stream: io.StringIO, task_id: str) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [entry for entry in parsed if entry.get("task_id") == task_id]


def test_a_retried_attempt_logs_one_line_with_its_error_and_no_traceback(
    drain: Any, settings: Any, json_lines: io.StringIO
) -> None:
    use_thread_pool(settings, backoff=0.01)
    result = tasks.flaky.enqueue("log-retry", 1)  # fails once, then succeeds
    until_finished(drain, result)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert "RuntimeError: failure 1 of 1" in result.errors[0].traceback  # kept on the result
    mine = entries(json_lines, result.id)
    assert not [e for e in mine if "exception" in e], "a traceback was logged for an attempt"
    finished = [e for e in mine if e["logger"] == "tandem.tasks"]
    assert [(e["outcome"], e["attempt"]) for e in finished] == [("retried", 1), ("succeeded", 2)]
    assert finished[0]["error"] == "RuntimeError: failure 1 of 1"
    assert finished[0]["message"].endswith(": RuntimeError: failure 1 of 1")
    # Per attempt: started (INFO), then finished. Across attempts the order is not fixed:
    # ``task_finished`` goes out on the supervisor's signals thread once the ending is stored,
    # and the retry (due 10 ms later) may start on a pool thread before that send.
    django_lines = [e for e in mine if e["logger"] == "django.tasks"]
    by_attempt = sorted(django_lines, key=lambda e: e["attempt"])  # stable: keeps each order
    assert [(e["attempt"], e["level"]) for e in by_attempt] == [
        (1, "INFO"),
        (1, "ERROR"),
        (2, "INFO"),
        (2, "INFO"),
    ]
    for entry in mine:
        assert {name for name in FIELDS if name in entry} == set(FIELDS), entry


def test_records_made_inside_a_coroutine_task_carry_its_fields(
    drain: Any, settings: Any, json_lines: io.StringIO
) -> None:
    use_thread_pool(settings)
    results = [tasks.async_logs.enqueue(f"line {i}") for i in range(3)]
    drain(workers=1)
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
        own = [e for e in entries(json_lines, result.id) if e["logger"] == "tests.tasks"]
        assert [e["message"] for e in own] == [f"async {result.args[0]}"]
        assert own[0]["task_path"] == "tests.tasks.async_logs"
        assert own[0]["attempt"] == 1


def use_thread_pool(settings: Any, **pool: Any) -> None:
    """A thread pool: the worker's records are made in this process, where the test reads them."""
    configured = {k: dict(v) for k, v in settings.TASKS.items()}
    configured["default"]["OPTIONS"] = {
        "pools": {
            "default": {
                "queues": ["default", "critical", "exports"],
                "executor": "thread",
                **pool,
            }
        }
    }
    settings.TASKS = configured


def until_finished(drain: Any, result: Any) -> None:
    """Burst rounds until ``result`` finished: its retry, a few ms of back-off later, may not be
    due yet when a burst finds the queue empty."""

    def finished() -> bool:
        drain(workers=1)
        return TaskRecord.objects.get(id=result.id).status in ("SUCCESSFUL", "FAILED")

    wait_for(finished, "the retried task to finish")

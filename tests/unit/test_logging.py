"""``tandem.logging``: the JSON and plain formatters and the attempt's fields."""

from __future__ import annotations

import json
import logging
import sys

from tandem.logging import FIELDS, AttemptFilter, JsonFormatter, PlainFormatter, attempt
from tests.support.doubles import running_task as stored


def record(
    name: str = "tandem.worker", message: str = "hello %s", **extra: object
) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, message, ("world",), None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_json_is_one_object_per_line_with_the_fields_given_in_extra() -> None:
    line = JsonFormatter().format(record(task_id="t1", queue="emails", attempt=3, duration_ms=5))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "hello world"
    assert entry["level"] == "INFO" and entry["logger"] == "tandem.worker"
    assert entry["time"].endswith("Z")
    assert (entry["task_id"], entry["queue"], entry["attempt"]) == ("t1", "emails", 3)
    assert entry["duration_ms"] == 5
    assert "task_path" not in entry  # only the fields that apply


def test_records_made_during_an_attempt_carry_its_fields() -> None:
    task = stored()
    with attempt(task):
        inside = json.loads(JsonFormatter().format(record("myapp", "sending %s")))
        plain = PlainFormatter().format(record("django.tasks", "Task id=%s"))
    outside = json.loads(JsonFormatter().format(record("myapp", "idle %s")))
    assert {name: inside[name] for name in FIELDS} == {
        "task_id": task.id,
        "task_path": "shop.tasks.send",
        "queue": "emails",
        "attempt": 2,
        "worker_id": "host-1-abc",
    }
    assert not set(FIELDS) & set(outside)
    assert plain.endswith(
        f"INFO django.tasks Task id=world task_id={task.id} task_path=shop.tasks.send "
        "queue=emails attempt=2 worker_id=host-1-abc"
    )


def test_the_exception_is_one_json_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("tandem", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(failed))
    assert entry["exception"].startswith("Traceback") and "ValueError: boom" in entry["exception"]


def test_values_json_cannot_hold_are_written_as_text() -> None:
    entry = json.loads(JsonFormatter().format(record(payload=object())))
    assert entry["payload"].startswith("<object object at")


def test_django_task_lines_lose_their_traceback_inside_an_attempt_only() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        info = sys.exc_info()
    with attempt(stored()):
        inside = logging.LogRecord("django.tasks", logging.ERROR, __file__, 1, "x", (), info)
        AttemptFilter().filter(inside)
    outside = logging.LogRecord("django.tasks", logging.ERROR, __file__, 1, "x", (), info)
    AttemptFilter().filter(outside)
    assert inside.exc_info is None
    assert outside.exc_info is not None


def test_the_filter_is_on_djangos_task_logger() -> None:
    assert any(isinstance(f, AttemptFilter) for f in logging.getLogger("django.tasks").filters)

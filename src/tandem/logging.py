"""One log format for everything a worker says: tandem's records, Django's ``django.tasks`` lines
and the task's own logging.

While an attempt runs (in any pool, in a coroutine too), the attempt's fields — ``task_id``,
``task_path``, ``queue``, ``attempt``, ``worker_id`` — are known to every log record made there:
``AttemptFilter`` stamps them on records that do not carry them already (tandem's supervisor-side
records name them in ``extra``). ``JsonFormatter`` writes one JSON object per line;
``PlainFormatter`` one text line with the same fields as ``key=value``. Both stamp the fields
themselves too, so either alone is enough in ``LOGGING`` (the filter is for handlers that format
in another thread, such as a ``QueueHandler``'s listener).

Inside an attempt, Django's ``task_finished`` line for a failure keeps its level but never has a
traceback (the traceback is stored on the result, ``result.errors``; the worker sends that signal
with the attempt's fields once the ending is stored, outside any ``except`` block): tandem's
``task finished`` line gives the error in one line, per attempt — retried or not.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from tandem.brokers.base import StoredTask

#: The fields of a task attempt that tandem's records carry where they apply.
FIELDS = ("task_id", "task_path", "queue", "attempt", "worker_id")

_attempt: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "tandem_attempt", default=None
)
#: Attributes every ``LogRecord`` has: anything else on a record came from ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


def task_fields(task: StoredTask) -> dict[str, Any]:
    """The log fields of ``task``'s current attempt."""
    return {
        "task_id": task.id,
        "task_path": task.task_path,
        "queue": task.queue_name,
        "attempt": task.attempts,
        "worker_id": task.worker_id,
    }


@contextlib.contextmanager
def attempt(task: StoredTask) -> Iterator[None]:
    """Records made in this block (this thread, or this coroutine and what it starts) carry
    ``task``'s fields."""
    token = _attempt.set(task_fields(task))
    try:
        yield
    finally:
        _attempt.reset(token)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The attempt fields of ``record``: its own (``extra``), else the running attempt's."""
    current = _attempt.get() or {}
    fields = {}
    for name in FIELDS:
        value = getattr(record, name, None)
        if value is None:
            value = current.get(name)
        if value is not None:
            fields[name] = value
    return fields


class AttemptFilter(logging.Filter):
    """Stamp the running attempt's fields on each record; drop the traceback of Django's
    ``task_finished`` line inside an attempt (it is on the result). Never rejects a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in fields_of(record).items():
            setattr(record, name, value)
        if record.name == "django.tasks" and record.exc_info and _attempt.get() is not None:
            record.exc_info = None
            record.exc_text = None
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    the attempt fields that apply, any other ``extra`` of the record, and ``exception`` (the
    formatted traceback) when the record has one. Values JSON cannot hold are written as
    their ``str()``."""

    def format(self, record: logging.LogRecord) -> str:
        AttemptFilter().filter(record)
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """``2026-12-06T21:00:00.123Z INFO tandem.tasks task finished: … task_id=… queue=… attempt=1
    worker_id=…``: a UTC timestamp, the level, the logger, the message and the attempt fields
    that apply (then a traceback, if any, on the lines below)."""

    def format(self, record: logging.LogRecord) -> str:
        AttemptFilter().filter(record)
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        fields = fields_of(record)
        if fields:
            line += " " + " ".join(f"{name}={value}" for name, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line


__all__ = ["FIELDS", "AttemptFilter", "JsonFormatter", "PlainFormatter", "attempt", "task_fields"]

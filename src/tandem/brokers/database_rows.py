"""The task table as the database broker reads and writes it: its columns, and a row as a
``StoredTask``. Shared by the broker and its SQL dialects (``brokers/dialects/``)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from tandem.brokers.base import ErrorRecord, NewTask, StoredTask, load_json
from tandem.models import TaskRecord

TABLE = TaskRecord._meta.db_table
NOTIFY_CHANNEL = "tandem"
COLUMNS = (
    "id",
    "backend",
    "queue_name",
    "task_path",
    "priority",
    "takes_context",
    "status",
    "args",
    "kwargs",
    "run_after",
    "available_at",
    "enqueued_at",
    "started_at",
    "last_attempted_at",
    "finished_at",
    "return_value",
    "errors",
    "worker_ids",
    "max_attempts",
    "worker_id",
    "lease_expires_at",
    "timeout",
    "unique_key",
    "progress",
    "progress_at",
    "cancel_requested_at",
    "attempt_token",
    "trace_context",
    "concurrency_key",
    "concurrency_limit",
    "on_limit",
    "rate_limit",
)
#: The columns ``enqueue()`` writes (the others start NULL), and the rows per INSERT statement.
INSERT_COLUMNS = (
    *COLUMNS[: COLUMNS.index("enqueued_at") + 1],
    "errors",
    "worker_ids",
    "max_attempts",
    "worker_id",
    "timeout",
    "trace_context",
    "concurrency_key",
    "concurrency_limit",
    "on_limit",
    "rate_limit",
)
INSERT_BATCH = 500
#: PostgreSQL's array types for its several-row insert's parameters (``dialects.postgresql``),
#: in ``INSERT_COLUMNS`` order less the constant columns (status, errors, worker_ids, worker_id).
PG_UNNEST_TYPES = (
    "uuid",
    "text",
    "text",
    "text",
    "smallint",
    "boolean",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "timestamptz",
    "integer",
    "double precision",
    "text",
    "text",
    "integer",
    "text",
    "text",
)
JSON_COLUMNS = frozenset(
    {"args", "kwargs", "return_value", "errors", "worker_ids", "progress", "trace_context"}
)
ARGUMENT_COLUMNS = frozenset({"args", "kwargs"})
DATETIME_COLUMNS = frozenset(
    {
        "run_after",
        "available_at",
        "enqueued_at",
        "started_at",
        "last_attempted_at",
        "finished_at",
        "lease_expires_at",
        "progress_at",
        "cancel_requested_at",
    }
)


def row_values(t: NewTask) -> tuple[Any, ...]:
    """What ``enqueue()`` stores of ``t``, in ``PG_UNNEST_TYPES`` order (the id as a UUID)."""
    args_json, kwargs_json = t.json_args()
    return (
        uuid.UUID(t.id),
        t.backend,
        t.queue_name,
        t.task_path,
        t.priority,
        t.takes_context,
        args_json,
        kwargs_json,
        t.run_after,
        t.available_at,
        t.enqueued_at,
        t.max_attempts,
        t.timeout,
        None if t.trace_context is None else json.dumps(t.trace_context),
        t.concurrency_key,
        t.concurrency_limit,
        t.on_limit,
        t.rate_limit,
    )


#: Where ``row_to_task`` finds the columns it converts, by kind.
_ARGUMENTS_AT = tuple(i for i, name in enumerate(COLUMNS) if name in ARGUMENT_COLUMNS)
_JSON_AT = tuple(
    i for i, name in enumerate(COLUMNS) if name in JSON_COLUMNS and name not in ARGUMENT_COLUMNS
)
_DATETIMES_AT = tuple(i for i, name in enumerate(COLUMNS) if name in DATETIME_COLUMNS)
_HEX_ID = re.compile("[0-9a-f]{32}")
_ARGS_AT = COLUMNS.index("args")
_TAKES_CONTEXT_AT = COLUMNS.index("takes_context")
_ERRORS_AT = COLUMNS.index("errors")
_WORKER_IDS_AT = COLUMNS.index("worker_ids")
_ID_AT = COLUMNS.index("id")


def row_to_task(row: Sequence[Any]) -> StoredTask:
    """A row of ``COLUMNS`` as the store's drivers return it, as a ``StoredTask``.

    Each column is converted by its kind, found by position (a claim converts every row it
    claims: this runs once per task). What PostgreSQL's driver returns ready — an aware
    ``datetime``, a ``UUID`` — is taken as it is."""
    values = list(row)
    if len(values) != len(COLUMNS):
        raise ValueError(f"a task row has {len(COLUMNS)} columns, not {len(values)}")
    for i in _ARGUMENTS_AT:
        value = values[i]
        if value == "[]" or value == "{}":
            values[i] = [] if value == "[]" else {}  # most tasks' (as json.loads, cheaper)
        elif value is None:
            values[i] = [] if i == _ARGS_AT else {}
        elif isinstance(value, str | bytes):
            values[i] = load_json(value)  # a corrupt row fails when run, not in the claim
    for i in _JSON_AT:
        value = values[i]
        if value == "[]":
            values[i] = []
        elif isinstance(value, str | bytes):
            values[i] = json.loads(value)
    for i in _DATETIMES_AT:
        value = values[i]
        if value is None or (type(value) is datetime and value.tzinfo is not None):
            continue
        if isinstance(value, str):
            value = parse_datetime(value)
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        values[i] = value
    task_id = values[_ID_AT]
    if type(task_id) is uuid.UUID:  # PostgreSQL
        values[_ID_AT] = str(task_id)
    elif type(task_id) is str and _HEX_ID.fullmatch(task_id):  # SQLite, MariaDB: uuid.hex
        values[_ID_AT] = (
            f"{task_id[:8]}-{task_id[8:12]}-{task_id[12:16]}-{task_id[16:20]}-{task_id[20:]}"
        )
    else:
        values[_ID_AT] = str(uuid.UUID(str(task_id)))
    values[_TAKES_CONTEXT_AT] = bool(values[_TAKES_CONTEXT_AT])
    errors = values[_ERRORS_AT]
    values[_ERRORS_AT] = tuple(ErrorRecord(**e) for e in errors) if errors else ()
    values[_WORKER_IDS_AT] = tuple(values[_WORKER_IDS_AT] or ())
    return StoredTask(**dict(zip(COLUMNS, values, strict=True)))


__all__ = [
    "COLUMNS",
    "INSERT_BATCH",
    "INSERT_COLUMNS",
    "NOTIFY_CHANNEL",
    "PG_UNNEST_TYPES",
    "TABLE",
    "row_to_task",
    "row_values",
]

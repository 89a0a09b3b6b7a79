"""The values brokers store and hand back: task statuses, new and stored tasks, settlements,
recoveries, workers and queue counts (frozen dataclasses), and ``load_json``,
which reads a stored JSON value without letting one bad row fail a claim.

``tandem.brokers.base`` re-exports every name here: the contract and its values import as one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

READY = "READY"
RUNNING = "RUNNING"
FAILED = "FAILED"
SUCCESSFUL = "SUCCESSFUL"


class Unreadable(str):
    """A stored JSON value that does not parse (a corrupted or tampered row), kept as its text.

    Brokers read a row's arguments with ``load_json``, so one bad row cannot make a claim (and
    the supervisor's round with it) fail; the row is refused when it is run (``TaskNotRunnable``)
    and ends FAILED without being executed.
    """

    reason: str

    def __new__(cls, text: str, reason: str) -> Unreadable:
        value = super().__new__(cls, text)
        value.reason = reason
        return value

    def __reduce__(self) -> tuple[type[Unreadable], tuple[str, str]]:
        # Pickled (to a process pool's child, or a subinterpreter) with its reason: the default
        # for a str subclass would call ``Unreadable(text)`` and fail, crashing the attempt.
        return (Unreadable, (str(self), self.reason))


def load_json(text: str | bytes) -> Any:
    """``text`` decoded as JSON, or ``Unreadable(text)`` when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return Unreadable(text, str(exc))


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRecord:
    """One failed attempt, stored in the order the attempts happened."""

    exception_class_path: str
    traceback: str

    def as_json(self) -> dict[str, str]:
        return {"exception_class_path": self.exception_class_path, "traceback": self.traceback}


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """A task to store as READY (what ``enqueue()`` hands the broker)."""

    id: str
    backend: str
    queue_name: str
    task_path: str
    priority: int
    takes_context: bool
    args: list[Any]
    kwargs: dict[str, Any]
    run_after: datetime | None
    enqueued_at: datetime
    max_attempts: int = 1
    timeout: float | None = None
    # A unique task's key: while a task with the same key (and backend) is READY or RUNNING, a
    # push stores nothing and answers that task's id instead.
    unique_key: str | None = None
    # ``args`` and ``kwargs`` as JSON text, when the enqueue made it already (stores reuse it).
    args_json: str | None = None
    kwargs_json: str | None = None
    #: The W3C trace context (``traceparent``, ``tracestate``) of the enqueue's span, if traced.
    trace_context: dict[str, str] | None = None
    #: Flow control: at most ``concurrency_limit`` tasks with this key (and backend) RUNNING at
    #: once; one that would have to wait stays READY (``on_limit="wait"``) or ends FAILED with
    #: ``ConcurrencyLimited`` without running (``"discard"``). None: no limit.
    concurrency_key: str | None = None
    concurrency_limit: int = 1
    on_limit: str = "wait"
    #: Flow control: ``"N/s"``, ``"N/m"`` or ``"N/h"`` — at most N starts of this task path (and
    #: backend) in any window of that length; a task over it stays READY. None: no rate.
    rate_limit: str | None = None

    @property
    def available_at(self) -> datetime:
        return self.run_after or self.enqueued_at

    def json_args(self) -> tuple[str, str]:
        """``args`` and ``kwargs`` as JSON text."""
        return (
            self.args_json if self.args_json is not None else json.dumps(self.args),
            self.kwargs_json if self.kwargs_json is not None else json.dumps(self.kwargs),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredTask:
    """A task row as the broker holds it (the source of a ``TaskResult``)."""

    id: str
    backend: str
    queue_name: str
    task_path: str
    priority: int
    takes_context: bool
    status: str
    args: list[Any]
    kwargs: dict[str, Any]
    run_after: datetime | None
    available_at: datetime
    enqueued_at: datetime
    started_at: datetime | None
    last_attempted_at: datetime | None
    finished_at: datetime | None
    return_value: Any
    errors: tuple[ErrorRecord, ...]
    worker_ids: tuple[str, ...]
    max_attempts: int
    worker_id: str
    lease_expires_at: datetime | None
    timeout: float | None = None
    unique_key: str | None = None  # set only while READY or RUNNING
    progress: Any = None
    progress_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    #: The token of the latest attempt (fresh at every claim; "" before the first).
    attempt_token: str = ""
    #: The W3C trace context stored at enqueue (None: not traced).
    trace_context: dict[str, str] | None = None
    #: Flow control, as given at enqueue (see ``NewTask``).
    concurrency_key: str | None = None
    concurrency_limit: int = 1
    on_limit: str = "wait"
    rate_limit: str | None = None

    @property
    def attempts(self) -> int:
        return len(self.worker_ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """The end of one attempt, as the supervisor decided it: SUCCESSFUL, FAILED or READY."""

    id: str
    worker_id: str
    attempt_token: str  # the attempt that ended: its write is rejected when it is not current
    status: str
    finished_at: datetime
    return_value: Any = None
    error: ErrorRecord | None = None
    retry_at: datetime | None = None  # with status READY: when the retry may be claimed
    task_path: str = ""  # the settled task's path (for the supervisor's hooks; not written)
    #: False when the attempt's task has no ``concurrency_key``: no slot to free (a hint that
    #: saves the store a write; True is always safe).
    holds_slot: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered:
    """A task whose lease expired, and the status recovery gave it."""

    id: str
    status: str
    worker_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    """A live supervisor, as the worker registry shows it."""

    id: str
    backend: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    pools: dict[str, dict[str, Any]]
    started_at: datetime
    last_heartbeat_at: datetime
    tasks_done: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    queue_name: str
    ready: int = 0
    running: int = 0
    failed: int = 0
    successful: int = 0
    oldest_ready_at: datetime | None = field(default=None)

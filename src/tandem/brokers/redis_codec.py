"""How the Redis store writes Python values as strings and reads them back: stamps (sortable
microsecond counts), sorted-set scores, ISO 8601 text, canonical ids, a new task as the scripts'
ARGV fields and a stored task from its hash."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from tandem.brokers.base import ErrorRecord, NewTask, StoredTask, load_json

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ORIGIN = datetime(1, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def stamp(moment: datetime) -> str:
    """18 digits of microseconds since 0001-01-01 UTC: sorts as text exactly as in time."""
    return f"{(moment - ORIGIN) // MICROSECOND:018d}"


def from_stamp(text: str) -> datetime:
    return ORIGIN + timedelta(microseconds=int(text))


def score(moment: datetime) -> str:
    """Microseconds since the Unix epoch: a sorted-set score, exact for 1970 to 2255."""
    return str((moment - EPOCH) // MICROSECOND)


def iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat()


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def canonical_id(task_id: str) -> str | None:
    """The id in its canonical spelling, or None when it is not a UUID (no such task)."""
    try:
        return str(uuid.UUID(str(task_id)))
    except ValueError:
        return None


def push_fields(t: NewTask) -> list[str]:
    # The order of push_one's ARGV fields (redis_scripts.PUSH_FIELDS).
    return [
        str(uuid.UUID(t.id)),
        t.backend,
        t.queue_name,
        t.task_path,
        str(t.priority),
        "1" if t.takes_context else "0",
        json.dumps(t.args),
        json.dumps(t.kwargs),
        iso(t.run_after),
        iso(t.available_at),
        iso(t.enqueued_at),
        str(t.max_attempts),
        "" if t.timeout is None else repr(float(t.timeout)),
        t.unique_key or "",
        f"{stamp(t.available_at)}:{stamp(t.enqueued_at)}:{uuid.UUID(t.id)}",
        "" if t.trace_context is None else json.dumps(t.trace_context),
        t.concurrency_key or "",
        str(t.concurrency_limit),
        t.on_limit,
        t.rate_limit or "",
    ]


def stored_task(fields: Mapping[str, str] | Sequence[str]) -> StoredTask:
    if not isinstance(fields, Mapping):  # a script's HGETALL: field, value, field, value…
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    available_at = from_iso(fields["available_at"])
    enqueued_at = from_iso(fields["enqueued_at"])
    assert available_at is not None and enqueued_at is not None
    return StoredTask(
        id=fields["id"],
        backend=fields["backend"],
        queue_name=fields["queue_name"],
        task_path=fields["task_path"],
        priority=int(fields["priority"]),
        takes_context=fields["takes_context"] == "1",
        status=fields["status"],
        # A corrupt row fails when it is run (TaskNotRunnable), not in the claim.
        args=load_json(fields["args"]),
        kwargs=load_json(fields["kwargs"]),
        run_after=from_iso(fields["run_after"]),
        available_at=available_at,
        enqueued_at=enqueued_at,
        started_at=from_iso(fields["started_at"]),
        last_attempted_at=from_iso(fields["last_attempted_at"]),
        finished_at=from_iso(fields["finished_at"]),
        return_value=json.loads(fields["return_value"]),
        errors=tuple(ErrorRecord(**e) for e in json.loads(fields["errors"])),
        worker_ids=tuple(json.loads(fields["worker_ids"])),
        max_attempts=int(fields["max_attempts"]),
        worker_id=fields["worker_id"],
        lease_expires_at=from_iso(fields["lease_expires_at"]),
        timeout=float(fields["timeout"]) if fields["timeout"] else None,
        unique_key=fields["unique_key"] or None,
        progress=json.loads(fields["progress"]),
        progress_at=from_iso(fields["progress_at"]),
        cancel_requested_at=from_iso(fields["cancel_requested_at"]),
        attempt_token=fields.get("attempt_token") or "",
        trace_context=json.loads(fields.get("trace_context") or "null"),
        concurrency_key=fields.get("concurrency_key") or None,
        concurrency_limit=int(fields.get("concurrency_limit") or 1),
        on_limit=fields.get("on_limit") or "wait",
        rate_limit=fields.get("rate_limit") or None,
    )

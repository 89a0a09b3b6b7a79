"""How the Redis store writes Python values as strings and reads them back: stamps (sortable
microsecond counts), sorted-set scores, ISO 8601 text, canonical ids, a new task as the scripts'
ARGV fields (or as the plain writes that store it without a script) and a stored task from its
hash."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

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
    """A new task's fields for ``push_one``: 11 fields, then the field/value pairs of the fields
    that differ from their defaults, which the hash leaves out (``stored_task`` reads a missing
    field as its default)."""
    task_id = _canonical(t.id)
    enqueued_stamp = stamp(t.enqueued_at)
    args_json, kwargs_json = t.json_args()
    rank, extra = _rank_and_extra(t, task_id, enqueued_stamp)
    return [
        task_id,
        t.backend,
        t.queue_name,
        t.task_path,
        str(t.priority),
        args_json,
        kwargs_json,
        iso(t.enqueued_at),
        str(t.max_attempts),
        rank,
        t.unique_key or "",
        *extra,
    ]


#: A task id spelled canonically (what ``new_task_id`` makes): no need to parse it.
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


def _canonical(task_id: str) -> str:
    """``task_id`` in its canonical spelling; ValueError when it is not a UUID."""
    if type(task_id) is str and _CANONICAL(task_id):
        return task_id
    return str(uuid.UUID(task_id))


def _rank_and_extra(t: NewTask, task_id: str, enqueued_stamp: str) -> tuple[str, list[str]]:
    """``t``'s rank in its ready or delayed set, and the field/value pairs of its fields that
    differ from their defaults (``push_fields``)."""
    extra: list[str] = []
    if t.run_after is not None:
        available = iso(t.run_after)
        extra += ["run_after", available, "available_at", available]
        rank = f"{stamp(t.run_after)}:{enqueued_stamp}:{task_id}"
    else:
        rank = f"{enqueued_stamp}:{enqueued_stamp}:{task_id}"
    if t.takes_context:
        extra += ["takes_context", "1"]
    if t.timeout is not None:
        extra += ["timeout", repr(float(t.timeout))]
    if t.unique_key:
        extra += ["unique_key", t.unique_key]
    if t.trace_context is not None:
        extra += ["trace_context", json.dumps(t.trace_context)]
    if t.concurrency_key:
        extra += ["concurrency_key", t.concurrency_key]
    if t.concurrency_limit != 1:
        extra += ["concurrency_limit", str(t.concurrency_limit)]
    if t.on_limit != "wait":
        extra += ["on_limit", t.on_limit]
    if t.rate_limit:
        extra += ["rate_limit", t.rate_limit]
    return rank, extra


#: The names of ``push_fields``' first fields, as ``push_one`` stores them (``unique_key``, the
#: 11th, only when set: it is among the extra pairs then).
PUSHED = (
    "id",
    "backend",
    "queue_name",
    "task_path",
    "priority",
    "args",
    "kwargs",
    "enqueued_at",
    "max_attempts",
    "rank",
)


def hash_fields(fields: Sequence[str]) -> list[str]:
    """The field/value pairs of the hash ``push_one`` stores for ``push_fields``' ``fields``: the
    plain push (no script, ``RedisBroker.push``) stores this same hash."""
    pairs = ["status", "READY"]
    pairs += [item for pair in zip(PUSHED, fields, strict=False) for item in pair]
    pairs += fields[11:]
    return pairs


def plain_push(prefix: str, tasks: Sequence[NewTask]) -> list[tuple[str, ...]]:
    """The commands that store ``tasks`` (none with a unique key) under ``prefix`` as ``PUSH``
    does: each task's hash, its queue in the alias's queues, its rank in the ready set (or the
    delayed set, when its ``run_after`` is later than its enqueue), and a wake-up per alias
    naming the queues that got ready tasks. ``PUSH`` needs a script only for what must be read
    first, an active holder of a unique key; without one, the same writes in a ``MULTI`` are as
    atomic (a task in a queue has its hash) and several times cheaper for Redis.
    """
    if len(tasks) == 1:  # one ``enqueue()``: the same commands, without the grouping
        t = tasks[0]
        fields = push_fields(t)
        task_id, backend, queue, rank = fields[0], fields[1], fields[2], fields[9]
        hset = ("HSET", f"{prefix}:task:{task_id}", *hash_fields(fields))
        sadd = ("SADD", f"{prefix}:{backend}:queues", queue)
        if rank[:18] <= rank[19:37]:
            return [
                hset,
                sadd,
                ("ZADD", f"{prefix}:{backend}:ready:{queue}", str(-t.priority), rank),
                ("PUBLISH", f"{prefix}:{backend}:wake", queue),
            ]
        return [hset, sadd, ("ZADD", f"{prefix}:{backend}:delayed:{queue}", "0", rank)]
    commands: list[tuple[str, ...]] = []
    queues: dict[str, dict[str, None]] = {}
    ranks: dict[str, list[str]] = {}
    woken: dict[str, dict[str, None]] = {}
    for t in tasks:
        fields = push_fields(t)
        task_id, backend, queue, rank = fields[0], fields[1], fields[2], fields[9]
        commands.append(("HSET", f"{prefix}:task:{task_id}", *hash_fields(fields)))
        queues.setdefault(backend, {})[queue] = None
        # make_ready's test, on the enqueuer's clock: available (the rank's first stamp) by the
        # enqueue (its second).
        if rank[:18] <= rank[19:37]:
            ranks.setdefault(f"{prefix}:{backend}:ready:{queue}", []).extend(
                (str(-t.priority), rank)
            )
            woken.setdefault(backend, {})[queue] = None
        else:
            ranks.setdefault(f"{prefix}:{backend}:delayed:{queue}", []).extend(("0", rank))
    for backend, names in queues.items():
        commands.append(("SADD", f"{prefix}:{backend}:queues", *names))
    for zset, pairs in ranks.items():
        commands.append(("ZADD", zset, *pairs))
    for backend, names in woken.items():
        commands.append(("PUBLISH", f"{prefix}:{backend}:wake", ",".join(sorted(names))))
    return commands


def plain_push_request(prefix: str, t: NewTask) -> tuple[bytes, int] | None:
    """``plain_push(prefix, [t])`` in a ``MULTI``/``EXEC``, as the request Redis reads (RESP),
    and how many commands are between the two; None when a key or field is not ASCII (then
    ``redis_client.transaction`` packs the commands one argument at a time).

    The same bytes as ``redis_client._resp`` makes of those commands, in one string format:
    building the commands and then packing them argument by argument cost a single
    ``enqueue()`` about as much client CPU as sending it to Redis and reading the replies.
    """
    task_id = _canonical(t.id)
    enqueued_stamp = stamp(t.enqueued_at)
    args_json, kwargs_json = t.json_args()
    rank, extra = _rank_and_extra(t, task_id, enqueued_stamp)
    backend, queue, path = t.backend, t.queue_name, t.task_path
    priority, attempts, enqueued = str(t.priority), str(t.max_attempts), iso(t.enqueued_at)
    key = f"{prefix}:task:{task_id}"
    queues = f"{prefix}:{backend}:queues"
    extra_text = "".join([f"${len(a)}\r\n{a}\r\n" for a in extra]) if extra else ""
    if rank[:18] <= rank[19:37]:  # due by its enqueue: ready (plain_push's test)
        ready = f"{prefix}:{backend}:ready:{queue}"
        wake = f"{prefix}:{backend}:wake"
        score = str(-t.priority)
        rest = (
            f"*4\r\n$4\r\nZADD\r\n${len(ready)}\r\n{ready}\r\n${len(score)}\r\n{score}\r\n"
            f"${len(rank)}\r\n{rank}\r\n"
            f"*3\r\n$7\r\nPUBLISH\r\n${len(wake)}\r\n{wake}\r\n${len(queue)}\r\n{queue}\r\n"
        )
        count = 4
    else:
        delayed = f"{prefix}:{backend}:delayed:{queue}"
        rest = (
            f"*4\r\n$4\r\nZADD\r\n${len(delayed)}\r\n{delayed}\r\n$1\r\n0\r\n"
            f"${len(rank)}\r\n{rank}\r\n"
        )
        count = 3
    text = (
        f"*1\r\n$5\r\nMULTI\r\n"
        f"*{24 + len(extra)}\r\n$4\r\nHSET\r\n${len(key)}\r\n{key}\r\n"
        f"$6\r\nstatus\r\n$5\r\nREADY\r\n$2\r\nid\r\n${len(task_id)}\r\n{task_id}\r\n"
        f"$7\r\nbackend\r\n${len(backend)}\r\n{backend}\r\n"
        f"$10\r\nqueue_name\r\n${len(queue)}\r\n{queue}\r\n"
        f"$9\r\ntask_path\r\n${len(path)}\r\n{path}\r\n"
        f"$8\r\npriority\r\n${len(priority)}\r\n{priority}\r\n"
        f"$4\r\nargs\r\n${len(args_json)}\r\n{args_json}\r\n"
        f"$6\r\nkwargs\r\n${len(kwargs_json)}\r\n{kwargs_json}\r\n"
        f"$11\r\nenqueued_at\r\n${len(enqueued)}\r\n{enqueued}\r\n"
        f"$12\r\nmax_attempts\r\n${len(attempts)}\r\n{attempts}\r\n"
        f"$4\r\nrank\r\n${len(rank)}\r\n{rank}\r\n{extra_text}"
        f"*3\r\n$4\r\nSADD\r\n${len(queues)}\r\n{queues}\r\n${len(queue)}\r\n{queue}\r\n"
        f"{rest}*1\r\n$4\r\nEXEC\r\n"
    )
    if not text.isascii():
        return None
    return text.encode(), count


def pack(fields: list[str]) -> str:
    """``fields`` as one script argument (the Lua ``task_fields`` splits it): their lengths in
    bytes, comma-separated, then ``;`` and the fields one after another. One argument instead of
    a dozen: redis-py's packing costs per argument."""
    body = "".join(fields)
    if body.isascii():
        lengths = ",".join([str(len(f)) for f in fields])
    else:
        lengths = ",".join([str(len(f.encode())) for f in fields])
    return f"{lengths};{body}"


def push_arg(t: NewTask) -> str:
    """A new task as the one argument ``PUSH``, ``PUSH_WORKFLOW`` and ``FIRE_TICK`` take for it."""
    return pack(push_fields(t))


def _json(text: str | None, default: str, value: Any) -> Any:
    """A JSON field's value: ``value`` for a field left out (or empty) or holding ``default``,
    the JSON of ``value`` (no need to parse it)."""
    if not text or text == default:
        return value
    return json.loads(text)


def stored_task(fields: Mapping[str, str] | Sequence[str]) -> StoredTask:
    """A task from its hash. Fields at their defaults are not stored (``push_fields``); hashes
    written before that have them all, and read the same."""
    if not isinstance(fields, Mapping):  # a script's HGETALL: field, value, field, value…
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    get = fields.get
    enqueued_at = from_iso(fields["enqueued_at"])
    assert enqueued_at is not None
    available_at = from_iso(get("available_at")) or enqueued_at
    timeout = get("timeout")
    return StoredTask(
        id=fields["id"],
        backend=fields["backend"],
        queue_name=fields["queue_name"],
        task_path=fields["task_path"],
        priority=int(fields["priority"]),
        takes_context=get("takes_context") == "1",
        status=fields["status"],
        # A corrupt row fails when it is run (TaskNotRunnable), not in the claim.
        args=load_json(fields["args"]),
        kwargs=load_json(fields["kwargs"]),
        run_after=from_iso(get("run_after")),
        available_at=available_at,
        enqueued_at=enqueued_at,
        started_at=from_iso(get("started_at")),
        last_attempted_at=from_iso(get("last_attempted_at")),
        finished_at=from_iso(get("finished_at")),
        return_value=_json(get("return_value"), "null", None),
        errors=tuple(ErrorRecord(**e) for e in _json(get("errors"), "[]", ())),
        worker_ids=tuple(_json(get("worker_ids"), "[]", ())),
        max_attempts=int(fields["max_attempts"]),
        worker_id=get("worker_id") or "",
        lease_expires_at=from_iso(get("lease_expires_at")),
        timeout=float(timeout) if timeout else None,
        unique_key=get("unique_key") or None,
        progress=_json(get("progress"), "null", None),
        progress_at=from_iso(get("progress_at")),
        cancel_requested_at=from_iso(get("cancel_requested_at")),
        attempt_token=get("attempt_token") or "",
        trace_context=_json(get("trace_context"), "null", None),
        concurrency_key=get("concurrency_key") or None,
        concurrency_limit=int(get("concurrency_limit") or 1),
        on_limit=get("on_limit") or "wait",
        rate_limit=get("rate_limit") or None,
    )

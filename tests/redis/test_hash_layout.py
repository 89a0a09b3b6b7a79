"""A task's hash holds only the fields that differ from their defaults, every field reads back as
it was enqueued, and a hash written by an earlier version (every field, defaults included) still
decodes and runs through every transition."""

from __future__ import annotations

import json
from collections.abc import Callable

import redis

from tandem.brokers.base import (
    FAILED,
    READY,
    RUNNING,
    SUCCESSFUL,
    ErrorRecord,
    NewTask,
    Settlement,
)
from tandem.brokers.redis import RedisBroker, iso, score, stamp
from tests.support.redis_store import LEASE, T0, at, k, new_task

#: What every push stores, whatever the task.
ALWAYS = {
    "id",
    "backend",
    "queue_name",
    "task_path",
    "priority",
    "status",
    "args",
    "kwargs",
    "enqueued_at",
    "max_attempts",
    "rank",
}


def test_a_task_at_its_defaults_stores_only_the_fields_it_needs(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    task = new_task()
    broker.push([task])

    assert set(redis_client.hgetall(k("task", task.id))) == ALWAYS
    stored = broker.get(task.id)
    assert stored is not None
    assert (stored.available_at, stored.run_after, stored.started_at) == (at(-10), None, None)
    assert (stored.errors, stored.worker_ids, stored.return_value, stored.progress) == (
        (),
        (),
        None,
        None,
    )
    assert (stored.takes_context, stored.timeout, stored.unique_key, stored.trace_context) == (
        False,
        None,
        None,
        None,
    )
    assert (stored.concurrency_key, stored.concurrency_limit, stored.on_limit) == (
        None,
        1,
        "wait",
    )
    assert (stored.rate_limit, stored.worker_id, stored.attempt_token) == (None, "", "")


def test_every_field_set_at_enqueue_reads_back(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    task = new_task(
        priority=-3,
        takes_context=True,
        kwargs={"a": [1, "x"]},
        run_after=at(30),
        max_attempts=4,
        timeout=2.5,
        unique_key="report:1",
        trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        concurrency_key="tenant:1",
        concurrency_limit=3,
        on_limit="discard",
        rate_limit="5/m",
    )
    broker.push([task])

    fields = redis_client.hgetall(k("task", task.id))
    assert set(fields) == ALWAYS | {
        "takes_context",
        "run_after",
        "available_at",
        "timeout",
        "unique_key",
        "trace_context",
        "concurrency_key",
        "concurrency_limit",
        "on_limit",
        "rate_limit",
    }
    stored = broker.get(task.id)
    assert stored is not None
    assert (stored.priority, stored.takes_context, stored.args, stored.kwargs) == (
        -3,
        True,
        [1, 2],
        {"a": [1, "x"]},
    )
    assert (stored.run_after, stored.available_at, stored.enqueued_at) == (at(30), at(30), at(-10))
    assert (stored.max_attempts, stored.timeout, stored.unique_key) == (4, 2.5, "report:1")
    assert stored.trace_context == task.trace_context
    assert (stored.concurrency_key, stored.concurrency_limit, stored.on_limit) == (
        "tenant:1",
        3,
        "discard",
    )
    assert stored.rate_limit == "5/m"
    assert redis_client.zrange(k("default", "delayed", "default"), 0, -1) == [fields["rank"]]


def old_hash(task: NewTask) -> dict[str, str]:
    """The hash the previous version's push wrote: every field, defaults included."""
    rank = f"{stamp(task.available_at)}:{stamp(task.enqueued_at)}:{task.id}"
    return {
        "id": task.id,
        "backend": task.backend,
        "queue_name": task.queue_name,
        "task_path": task.task_path,
        "priority": str(task.priority),
        "takes_context": "1" if task.takes_context else "0",
        "status": READY,
        "args": json.dumps(task.args),
        "kwargs": json.dumps(task.kwargs),
        "run_after": iso(task.run_after),
        "available_at": iso(task.available_at),
        "enqueued_at": iso(task.enqueued_at),
        "max_attempts": str(task.max_attempts),
        "timeout": "" if task.timeout is None else repr(float(task.timeout)),
        "unique_key": task.unique_key or "",
        "rank": rank,
        "started_at": "",
        "last_attempted_at": "",
        "finished_at": "",
        "return_value": "null",
        "errors": "[]",
        "worker_ids": "[]",
        "attempts": "0",
        "worker_id": "",
        "lease_expires_at": "",
        "progress": "null",
        "progress_at": "",
        "cancel_requested_at": "",
        "trace_context": "",
        "concurrency_key": task.concurrency_key or "",
        "concurrency_limit": str(task.concurrency_limit),
        "on_limit": task.on_limit,
        "rate_limit": task.rate_limit or "",
    }


def store_old(redis_client: redis.Redis, task: NewTask) -> None:
    fields = old_hash(task)
    redis_client.hset(k("task", task.id), mapping=fields)
    redis_client.zadd(k("default", "ready", "default"), {fields["rank"]: -task.priority})
    redis_client.sadd(k("default", "queues"), "default")
    if task.unique_key:
        redis_client.hset(k("default", "unique"), task.unique_key, task.id)


def test_a_hash_written_by_the_previous_version_decodes_and_runs(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    task = new_task(max_attempts=2, unique_key="old:1", concurrency_key="tenant:1")
    store_old(redis_client, task)

    stored = broker.get(task.id)
    assert stored is not None
    assert (stored.status, stored.args, stored.available_at, stored.run_after) == (
        READY,
        [1, 2],
        at(-10),
        None,
    )
    assert (stored.unique_key, stored.concurrency_key, stored.errors, stored.timeout) == (
        "old:1",
        "tenant:1",
        (),
        None,
    )
    # Its unique key still holds: a new task with the key answers the old one's id.
    assert broker.push([new_task(unique_key="old:1")]) == [task.id]

    # First attempt fails and is retried, the second succeeds.
    [claimed] = broker.claim(["default"], 1, "w1", LEASE, T0)
    assert (claimed.id, claimed.status, claimed.worker_id) == (task.id, RUNNING, "w1")
    assert redis_client.hget(k("default", "slots", "tenant:1"), task.id) == claimed.attempt_token
    error = ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError: boom\n")
    retry = Settlement(
        id=task.id,
        attempt_token=claimed.attempt_token,
        worker_id="w1",
        status=READY,
        finished_at=at(1),
        error=error,
        retry_at=at(1),
    )
    assert broker.settle([retry]) == 1
    [again] = broker.claim(["default"], 1, "w2", at(120), at(2))
    assert (again.id, len(again.errors), again.worker_ids) == (task.id, 1, ("w1", "w2"))
    done = Settlement(
        id=task.id,
        attempt_token=again.attempt_token,
        worker_id="w2",
        status=SUCCESSFUL,
        finished_at=at(3),
        return_value=3,
    )
    assert broker.settle([done]) == 1
    finished = broker.get(task.id)
    assert finished is not None
    assert (finished.status, finished.return_value, finished.finished_at) == (
        SUCCESSFUL,
        3,
        at(3),
    )
    assert redis_client.zrange(k("default", "successful", "default"), 0, -1, withscores=True) == [
        (task.id, float(score(at(3))))
    ]


def test_an_old_hash_is_cancelled_and_recovered_like_a_new_one(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    waiting, running = new_task(), new_task(priority=1)
    store_old(redis_client, waiting)
    store_old(redis_client, running)

    [claimed] = broker.claim(["default"], 1, "w1", LEASE, T0)
    assert claimed.id == running.id
    assert broker.cancel(waiting.id, T0) == "cancelled"
    cancelled = broker.get(waiting.id)
    assert cancelled is not None and cancelled.status == FAILED
    [recovered] = broker.recover_expired(at(61), recovery_max_attempts=1)
    assert (recovered.id, recovered.status) == (running.id, FAILED)
    lost = broker.get(running.id)
    assert lost is not None and len(lost.errors) == 1


def test_fields_with_separators_and_non_ascii_text_arrive_whole(
    make_broker: Callable[..., RedisBroker],
) -> None:
    """A push sends each task's fields as one argument (lengths in bytes, ';', the fields): text
    holding ';', ',' or digits, multi-byte characters and empty fields all arrive as sent."""
    broker = make_broker()
    task = new_task(
        queue_name="q;1,2",
        args=["ü;", 3],
        kwargs={"ключ": "値,;"},
        args_json='["ü;", 3]',
        kwargs_json='{"ключ": "値,;"}',
        unique_key="12;34,ключ✓",
        concurrency_key=";",
        rate_limit="",
    )
    assert broker.push([task]) == [task.id]

    stored = broker.get(task.id)
    assert stored is not None
    assert (stored.queue_name, stored.args, stored.kwargs) == (
        "q;1,2",
        ["ü;", 3],
        {"ключ": "値,;"},
    )
    assert (stored.unique_key, stored.concurrency_key, stored.rate_limit) == (
        "12;34,ключ✓",
        ";",
        None,
    )
    assert broker.push([new_task(unique_key="12;34,ключ✓")]) == [task.id]
    [claimed] = broker.claim(["q;1,2"], 1, "w1", LEASE, T0)
    assert (claimed.id, claimed.kwargs) == (task.id, {"ключ": "値,;"})


def test_a_claim_answers_the_hash_as_stored_whatever_its_text(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    """The claim answers each task's hash as one JSON array (Redis's cjson): text that JSON
    escapes or spells in several ways arrives as it was stored, and an old hash's attempts go
    on from its count."""
    broker = make_broker()
    text = 'quote " back \\ slash / tab \t nl \n nul \x00 del \x7f ü 😀 \u2028'
    task = new_task(args=[text], kwargs={text: text})
    assert broker.push([task]) == [task.id]
    old = new_task(priority=-1)
    store_old(redis_client, old)
    redis_client.hset(k("task", old.id), mapping={"attempts": "2", "worker_ids": '["w0", "w9"]'})

    first, second = broker.claim(["default"], 2, "w/1", LEASE, T0)
    assert (first.id, first.args, first.kwargs) == (task.id, [text], {text: text})
    assert (first.worker_ids, first.worker_id, first.started_at) == (("w/1",), "w/1", T0)
    assert (second.id, second.worker_ids) == (old.id, ("w0", "w9", "w/1"))
    assert redis_client.hget(k("task", task.id), "attempts") == "1"
    assert redis_client.hget(k("task", old.id), "attempts") == "3"
    for claimed in (first, second):
        assert broker.get(claimed.id) == claimed  # the reply is the hash after the claim

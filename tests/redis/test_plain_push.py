"""A push without a unique key is plain writes in one ``MULTI`` (no script): it must leave Redis
exactly as the ``PUSH`` script does — the same hashes, sets, ranks and wake-ups — since workers
read one layout whichever way a task was stored. A unique key still takes the script."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis

from tandem.brokers.base import NewTask
from tandem.brokers.redis import RedisBroker
from tandem.brokers.redis_client import command, transaction
from tandem.brokers.redis_codec import push_arg
from tests.support.redis_store import PREFIX, URL, at, delete_keys, k, keys, new_task

TWIN = f"{PREFIX}-script"


@pytest.fixture
def twin(redis_client: redis.Redis) -> Iterator[str]:
    """A second prefix, for the same tasks pushed by the script; deleted after the test."""
    yield TWIN
    delete_keys(redis_client, TWIN)


def dump(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (prefix cut off) and what it holds."""
    found: dict[str, Any] = {}
    for key in keys(client, prefix):
        kind = client.type(key)
        if kind == "hash":
            value: Any = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(key))  # type: ignore[arg-type]
        else:
            value = kind
        found[key.removeprefix(prefix)] = value
    return found


def wakes(client: redis.Redis, prefix: str, push: Callable[[], None]) -> list[tuple[str, str]]:
    """The wake-ups ``push`` publishes under ``prefix``: (channel less prefix, message)."""
    pubsub = client.pubsub()
    pubsub.psubscribe(f"{prefix}:*:wake")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    try:
        push()
        heard = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.2)
            if message is None:
                break
            heard.append((message["channel"].removeprefix(prefix), message["data"]))
        return heard
    finally:
        pubsub.close()


def both_ways(
    make_broker: Callable[..., RedisBroker], client: redis.Redis, tasks: Sequence[NewTask]
) -> None:
    """Push ``tasks`` plainly under the test prefix and by the script under ``TWIN``; both
    must store and publish the same."""
    plain, script = make_broker(), make_broker(prefix=TWIN)
    plain_wakes = wakes(client, PREFIX, lambda: plain.push(tasks))
    script_wakes = wakes(client, TWIN, lambda: script._run("push", *map(push_arg, tasks)))
    assert dump(client, PREFIX) == dump(client, TWIN)
    assert plain_wakes == script_wakes


#: One task per stored shape: defaults, priorities, a delay (future and past), every optional
#: field, another queue and another alias.
def variety() -> list[NewTask]:
    return [
        new_task(),
        new_task(priority=-3, args=[], kwargs={"a": "é", "b": [1, None]}),
        new_task(priority=7, run_after=at(30)),  # not yet available: the delayed set
        new_task(run_after=at(-60)),  # available before its enqueue: ready, ranked by it
        new_task(
            takes_context=True,
            max_attempts=4,
            timeout=2.5,
            trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01"},
            concurrency_key="tenant:1",
            concurrency_limit=3,
            on_limit="discard",
            rate_limit="5/m",
        ),
        new_task(queue_name="critical", priority=2),
        new_task(backend="other", queue_name="exports"),
    ]


def test_each_task_is_stored_as_the_script_stores_it(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis, twin: str
) -> None:
    for task in variety():
        both_ways(make_broker, redis_client, [task])
    assert redis_client.zcard(k("default", "delayed", "default")) == 1


def test_a_batch_is_stored_as_the_script_stores_it(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis, twin: str
) -> None:
    both_ways(make_broker, redis_client, variety())


def test_plain_pushes_claim_in_the_scripts_order(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    low, high, later = new_task(priority=-1), new_task(priority=5), new_task(run_after=at(5))
    broker.push([low, high, later])
    claimed = broker.claim(["default"], 5, "w1", at(60), at(-1))
    assert [t.id for t in claimed] == [high.id, low.id]  # `later` is not due yet
    assert [t.id for t in broker.claim(["default"], 5, "w1", at(60), at(10))] == [later.id]


def test_a_unique_key_takes_the_script_and_answers_the_holder(
    make_broker: Callable[..., RedisBroker], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = make_broker()
    ran: list[str] = []
    run = broker._run

    def spy(name: str, *args: str | int) -> Any:
        ran.append(name)
        return run(name, *args)

    monkeypatch.setattr(broker, "_run", spy)
    plain, holder, duplicate = new_task(), new_task(unique_key="u"), new_task(unique_key="u")
    assert broker.push([plain]) == [plain.id]
    assert ran == []
    # One unique task in a batch: the whole batch goes through the script.
    other = new_task()
    assert broker.push([other, holder]) == [other.id, holder.id]
    assert broker.push([duplicate]) == [holder.id]
    assert ran == ["push", "push"]


def test_an_id_in_another_spelling_is_stored_canonical_and_answered_as_given(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    task = new_task(id="{12345678-1234-5678-1234-567812345678}")
    assert make_broker().push([task]) == [task.id]
    assert redis_client.hget(k("task", "12345678-1234-5678-1234-567812345678"), "status") == (
        "READY"
    )


def test_a_refused_write_raises_and_leaves_the_connection_usable(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    redis_client.set(k("default", "queues"), "not a set")  # SADD fails: WRONGTYPE
    task = new_task()
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        broker.push([task])
    # A MULTI applies its other writes anyway (Redis has no rollback); the error is raised so
    # that the caller knows the enqueue failed, and the connection reads in step afterwards.
    assert redis_client.get(k("default", "queues")) == "not a set"
    assert broker.get(task.id) is not None
    redis_client.delete(k("default", "queues"))
    again = new_task()
    assert broker.push([again]) == [again.id]


def test_a_command_refused_before_exec_aborts_the_transaction(
    redis_client: redis.Redis,
) -> None:
    with pytest.raises(redis.ResponseError):
        transaction(redis_client, [("SET", k("x"), "1"), ("NOSUCHCOMMAND",)])
    assert redis_client.get(k("x")) is None
    assert transaction(redis_client, [("SET", k("x"), "2"), ("GET", k("x"))]) == ["OK", "2"]


def test_a_single_connection_client_uses_redis_pys_pipeline(redis_client: redis.Redis) -> None:
    single = redis.Redis(
        connection_pool=redis_client.connection_pool, single_connection_client=True
    )
    try:
        assert transaction(single, [("SET", k("y"), "1"), ("GET", k("y"))])[1] == "1"
    finally:
        single.close()


def test_non_ascii_arguments_are_sent_by_their_length_in_bytes(redis_client: redis.Redis) -> None:
    text = "é€😀 ascii"
    assert transaction(redis_client, [("SET", k("u"), text), ("GET", k("u"))]) == ["OK", text]
    assert transaction(redis_client, [("SET", k("u"), "plain"), ("GET", k("u"))]) == ["OK", "plain"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_replies_are_read_as_lines_where_they_are_lines(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, protocol: int
) -> None:
    """With redis-py's own parser, ``MULTI``'s reply and the ``QUEUED`` ones are read as lines,
    and ``EXEC``'s too when they are all integers (an enqueue's): ``read_response`` parses only
    an ``EXEC`` reply with other replies in it. The connection stays in step either way."""
    client = redis.Redis.from_url(URL, decode_responses=True, protocol=protocol)
    try:
        client.ping()
        connection = client.connection_pool.get_connection()
        parser = type(connection._parser).__name__
        client.connection_pool.release(connection)
        if parser not in ("_RESP2Parser", "_RESP3Parser"):
            pytest.skip(f"parser {parser}: every reply is read by it")
        reads = 0
        read_response = redis.connection.Connection.read_response

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            return read_response(self, *args, **kwargs)

        monkeypatch.setattr(redis.connection.Connection, "read_response", counted)
        assert transaction(client, [("INCR", k("q")), ("SADD", k("s"), "a", "b")]) == [1, 2]
        assert reads == 0
        commands = [("SET", k("q"), "1"), ("INCR", k("q")), ("GET", k("q"))]
        assert transaction(client, commands) == ["OK", 2, "2"]
        assert reads == 1
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            transaction(client, [("INCR", k("q")), ("INCR", k("s")), ("INCR", k("q"))])
        assert client.get(k("q")) == "4"
        assert transaction(client, [("INCR", k("q"))]) == [5]
    finally:
        client.close()


# -- one command (``command``: every script call) ------------------------------------------------


def test_one_command_answers_as_execute_command_does(redis_client: redis.Redis) -> None:
    text = "é€😀 ascii"
    assert command(redis_client, ["SET", k("c"), text]) == "OK"
    assert command(redis_client, ["GET", k("c")]) == text
    assert command(redis_client, ["EVAL", "return {ARGV[1], 7}", "0", text]) == [text, 7]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        command(redis_client, ["SADD", k("c"), "x"])
    with pytest.raises(redis.exceptions.NoScriptError):
        command(redis_client, ["EVALSHA", "0" * 40, "0"])
    assert command(redis_client, ["GET", k("c")]) == text  # the connection is still in step


def test_one_command_on_a_single_connection_client(redis_client: redis.Redis) -> None:
    single = redis.Redis(
        connection_pool=redis_client.connection_pool, single_connection_client=True
    )
    try:
        assert command(single, ["EVAL", "return redis.call('SET', KEYS[1], '1')", "1", k("z")])
        assert command(single, ["GET", k("z")]) == "1"
    finally:
        single.close()

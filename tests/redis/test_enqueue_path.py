"""One ``enqueue()`` on Redis: its request packed in one go (``plain_push_request``), its
connection taken from the pool without redis-py's per-call bookkeeping (``_checkout``), and the
backend's per-task lookups made once per task object. Each must behave exactly as the general
path it shortcuts: the same bytes on the wire, a stale or unusual connection handled by
redis-py, the same results."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.tasks import task_backends

from tandem.backends.base import TandemBackend
from tandem.brokers.redis import RedisBroker
from tandem.brokers.redis_client import (
    _GET_CONNECTION_ARGS,
    _checkout,
    _plain_pool,
    _quiet,
    _resp,
    command,
)
from tandem.brokers.redis_codec import plain_push, plain_push_request
from tests import tasks
from tests.redis.test_plain_push import variety
from tests.support.redis_store import PREFIX, URL, k, new_task


def test_the_packed_request_is_the_commands_packed_one_by_one() -> None:
    for task in variety():
        commands = plain_push(PREFIX, [task])
        assert plain_push_request(PREFIX, task) == (
            _resp([("MULTI",), *commands, ("EXEC",)]),
            len(commands),
        )
    # Spelt otherwise, the id is stored canonical, as push_fields stores it.
    task = new_task(id="{12345678-1234-5678-1234-567812345678}")
    commands = plain_push(PREFIX, [task])
    assert plain_push_request(PREFIX, task) == (
        _resp([("MULTI",), *commands, ("EXEC",)]),
        len(commands),
    )
    with pytest.raises(ValueError):
        plain_push_request(PREFIX, new_task(id="not-a-uuid"))


def test_a_non_ascii_key_is_left_to_the_commands(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    task = new_task(queue_name="файлы")
    assert plain_push_request(PREFIX, task) is None
    assert make_broker().push([task]) == [task.id]
    assert redis_client.zcard(k("default", "ready", "файлы")) == 1
    assert make_broker().get(task.id).queue_name == "файлы"  # type: ignore[union-attr]


def _counting_get_connection(monkeypatch: pytest.MonkeyPatch, pool: Any) -> list[int]:
    calls = [0]
    get_connection = pool.get_connection

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return get_connection(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counted)
    return calls


def test_an_idle_connection_is_reused_without_get_connection(
    make_broker: Callable[..., RedisBroker],
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = redis_client.connection_pool
    broker = make_broker()
    broker.push([new_task()])  # a connection exists and is idle in the pool
    idle = len(pool._available_connections)  # the process's client: earlier tests' too
    calls = _counting_get_connection(monkeypatch, pool)
    for _ in range(3):
        task = new_task()
        assert broker.push([task]) == [task.id]
        assert command(redis_client, ["HGET", k("task", task.id), "status"]) == "READY"
    assert calls == [0]
    assert not pool._in_use_connections  # every connection given back
    assert len(pool._available_connections) == idle


def test_a_connection_with_unread_data_goes_through_redis_pys_checks(
    make_broker: Callable[..., RedisBroker],
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PING whose reply was never read (an interrupted command): the connection is not used
    as it is, or the push would read that reply as its own; redis-py reconnects it."""
    pool = redis_client.connection_pool
    broker = make_broker()
    broker.push([new_task()])
    connection = pool.get_connection(*_GET_CONNECTION_ARGS)
    connection.send_command("PING")  # type: ignore[no-untyped-call]
    assert connection.can_read(timeout=5)  # its reply has arrived (buffered now)
    pool.release(connection)  # type: ignore[no-untyped-call]
    calls = _counting_get_connection(monkeypatch, pool)
    task = new_task()
    assert broker.push([task]) == [task.id]
    assert calls == [1]
    assert broker.get(task.id) is not None
    assert command(redis_client, ["PING"]) == "PONG"  # in step


def test_only_redis_pys_plain_pool_is_shortcut(redis_client: redis.Redis) -> None:
    assert _plain_pool(redis_client.connection_pool)
    blocking = redis.BlockingConnectionPool.from_url(URL, decode_responses=True)
    provider = redis.UsernamePasswordCredentialProvider(None, None)
    with_provider = redis.ConnectionPool.from_url(URL, credential_provider=provider)
    try:
        assert not _plain_pool(blocking)
        assert not _plain_pool(with_provider)
        conn, fast = _checkout(blocking)
        assert not fast
        blocking.release(conn)  # type: ignore[no-untyped-call]
        assert command(redis.Redis(connection_pool=blocking), ["PING"]) == "PONG"
    finally:
        blocking.disconnect()
        with_provider.disconnect()


def test_only_a_connected_plain_socket_is_checked_by_select(redis_client: redis.Redis) -> None:
    pool = redis_client.connection_pool
    command(redis_client, ["PING"])
    connection: Any = pool.get_connection(*_GET_CONNECTION_ARGS)
    try:
        assert type(connection._sock) is socket.socket
        assert _quiet(connection)
        connection.disconnect()
        assert not _quiet(connection)  # not connected: get_connection connects it
    finally:
        pool.release(connection)  # type: ignore[no-untyped-call]


def test_enqueue_looks_a_task_up_once_and_a_changed_copy_again(
    redis_backend: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_backend()
    backend = task_backends["default"]
    assert isinstance(backend, TandemBackend)
    looked_up: list[int] = []
    shared_by_items = backend.shared_by_items

    def counted(task: Any) -> Any:
        looked_up.append(task.priority)
        return shared_by_items(task)

    monkeypatch.setattr(backend, "shared_by_items", counted)
    first = tasks.noop.enqueue()
    second = tasks.noop.enqueue()
    urgent = tasks.noop.using(priority=5).enqueue()
    assert looked_up == [0, 5]
    assert first.id != second.id
    assert backend.get_result(urgent.id).task.priority == 5
    assert backend.get_result(second.id).status == "READY"

"""The Redis client of a process: one per server and credentials, shared by every thread.

Also how redis-py's errors reach the rest of tandem: an unreachable Redis is Python's
``ConnectionError`` or ``TimeoutError`` (both ``OSError``), which the supervisor treats as "the
store is unavailable: back off and retry", as it does for the database.
"""

from __future__ import annotations

import functools
import io
import os
import re
import select
import socket
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.exceptions import ResponseError

from tandem.conf import RedisOptions


def store_errors[**P, R](method: Callable[P, R]) -> Callable[P, R]:
    """Report an unreachable Redis as Python's ConnectionError/TimeoutError (store unavailable)."""

    @functools.wraps(method)
    def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except redis.TimeoutError as exc:
            raise TimeoutError(f"Redis: {exc}") from exc
        except redis.ConnectionError as exc:
            raise ConnectionError(f"Redis: {exc}") from exc

    return translated


_clients: dict[tuple[str | None, ...], redis.Redis] = {}
_clients_lock = threading.Lock()


def connect(options: RedisOptions) -> redis.Redis:
    """The process's client for ``options`` (thread-safe, with its own connection pool).

    Django makes a backend per thread; they share one client (per server and credentials, not
    per prefix), so a threaded server holds a few connections, not a pool per thread. Nothing
    connects until the first command.
    """
    where = (
        options.url,
        options.password,
        options.ssl_ca_certs,
        options.ssl_certfile,
        options.ssl_keyfile,
    )
    with _clients_lock:
        client = _clients.get(where)
        if client is None:
            kwargs: dict[str, Any] = {
                "decode_responses": True,
                "socket_connect_timeout": 5.0,
                "socket_timeout": 30.0,
                "socket_keepalive": True,
                "health_check_interval": 30,
            }
            if options.password is not None:
                kwargs["password"] = options.password
            if options.tls:
                for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
                    value = getattr(options, name)
                    if value is not None:
                        kwargs[name] = value
            client = redis.Redis.from_url(options.url, **kwargs)
            _clients[where] = client
        return client


#: What ``ConnectionPool.get_connection`` takes: nothing since redis-py 5.3 (an argument then
#: warns), a command name before.
_GET_CONNECTION_ARGS: tuple[str, ...] = (
    () if tuple(int(n) for n in redis.__version__.split(".")[:2]) >= (5, 3) else ("MULTI",)
)


def _resp(commands: Sequence[Sequence[str]]) -> bytes:
    """``commands`` in Redis's wire format (RESP), every argument a string, UTF-8.

    Formatted as one string and encoded once when every argument is ASCII (then characters
    and bytes agree on the lengths); argument by argument otherwise."""
    parts: list[str] = []
    for command in commands:
        parts.append(f"*{len(command)}\r\n")
        parts += [f"${len(arg)}\r\n{arg}\r\n" for arg in command]
    text = "".join(parts)
    if text.isascii():
        return text.encode()
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg.encode()
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def transaction(client: redis.Redis, commands: Sequence[Sequence[str]]) -> list[Any]:
    """Run ``commands`` (string arguments only) in one ``MULTI``/``EXEC``, in one round trip:
    atomic like a script, without running one (Redis runs a Lua script's whole text per call,
    several times the cost of the commands themselves). Returns the replies; raises the first
    error reply, as a pipeline does.

    redis-py's transaction pipeline does the same with more work per command (an encoder per
    argument, a callback per reply), which an enqueue pays on every call. This one packs the
    commands itself and otherwise goes through redis-py's connection: its pool, health check,
    and retry policy (the connection is dropped and the request sent again after a connection
    error, as redis-py does for any command).
    """
    if getattr(client, "connection", None) is not None:  # a single-connection client
        pipe = client.pipeline(transaction=True)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        return pipe.execute()
    return transaction_request(client, _resp([("MULTI",), *commands, ("EXEC",)]), len(commands))


def transaction_request(client: redis.Redis, request: bytes, count: int) -> list[Any]:
    """``transaction`` of a request packed already: ``MULTI``, ``count`` commands and ``EXEC``
    in RESP (``redis_codec.plain_push_request``), on a client without a single connection."""
    packed = [request]
    pool = client.connection_pool
    conn, fast = _checkout(pool)
    try:
        return conn.retry.call_with_retry(  # type: ignore[no-any-return]
            lambda: _multi_exec(conn, packed, count), lambda _error: conn.disconnect()
        )
    finally:
        _checkin(pool, conn, fast)


def command(client: redis.Redis, args: Sequence[str]) -> Any:
    """Run one command (string arguments only) in one round trip and return its reply as Redis
    sent it (no response callback: for the scripts, which have none), raising an error reply:
    ``client.execute_command`` with less work on the way.

    A worker's claim and settle are one ``EVALSHA`` each, on the path from an enqueue to the
    task's start; between tasks that arrive now and then the worker is idle, and code run after
    an idle spell runs several times slower than in a loop (cold caches), so every layer counts:
    redis-py's per-argument encoder, its command-name lookups, response callbacks and
    instrumentation cost an ``EVALSHA`` about half its client CPU. This packs the request
    itself (``_resp``) and otherwise goes through redis-py's connection as ``transaction``
    does: its pool, health check, parser and retry policy (the connection is dropped and the
    request sent again after a connection error)."""
    if getattr(client, "connection", None) is not None:  # a single-connection client
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    packed = [_resp([args])]
    pool = client.connection_pool
    conn, fast = _checkout(pool)
    try:
        return conn.retry.call_with_retry(
            lambda: _send_and_read(conn, packed), lambda _error: conn.disconnect()
        )
    finally:
        _checkin(pool, conn, fast)


#: This process's id, kept up to date over forks: ``ConnectionPool._checkpid`` asks the kernel
#: (``os.getpid()`` is a system call) twice per command.
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)

#: Per pool: whether ``_checkout`` may take its connections itself (``_plain_pool``).
_plain_pools: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _plain_pool(pool: Any) -> bool:
    """Whether ``pool`` is redis-py's own ``ConnectionPool`` with nothing that needs to see a
    connection come and go: no client-side cache, no credential provider (re-authenticated on
    release), and the attributes ``_checkout`` uses (redis-py 5 to 8 have them). Maintenance
    notifications arrive as pending data on an idle connection, which ``_checkout`` leaves to
    ``get_connection``."""
    plain = _plain_pools.get(pool)
    if plain is None:
        names = ("_lock", "_available_connections", "_in_use_connections", "_checkpid", "pid")
        plain = (
            type(pool) is redis.ConnectionPool
            and all(hasattr(pool, name) for name in names)
            and getattr(pool, "cache", None) is None
            and pool.connection_kwargs.get("credential_provider") is None
        )
        _plain_pools[pool] = plain
    return plain


def _checkout(pool: Any) -> tuple[Any, bool]:
    """A connection of ``pool``, ready to send a command, and whether it was taken by the fast
    path (then ``_checkin`` gives it back the same way).

    ``pool.get_connection()`` and ``release()`` cost an enqueue more than packing its request:
    redis-py records connection counts for its metrics (a pair that cancels out over a
    get and a release), dispatches a release event and checks that the idle connection has
    no pending data with a non-blocking read between two ``settimeout`` calls (three system
    calls). For a plain pool (``_plain_pool``) this takes an idle connection itself, under the
    pool's lock and fork check as redis-py does, and checks for pending data with one
    ``select``; anything unusual (no idle connection, not connected, a TLS socket, another
    parser, pending data) goes through ``get_connection``'s full path, so a new or stale
    connection is made, counted and checked by redis-py."""
    if _plain_pool(pool):
        if pool.pid != _pid:  # forked: redis-py's check resets the pool
            pool._checkpid()
        with pool._lock:
            idle = pool._available_connections
            conn = idle.pop() if idle else None
            if conn is not None:
                pool._in_use_connections.add(conn)
        if conn is not None:
            if _quiet(conn):
                return conn, True
            with pool._lock:  # back to where get_connection expects to find it
                pool._in_use_connections.discard(conn)
                pool._available_connections.append(conn)
    return pool.get_connection(*_GET_CONNECTION_ARGS), False


def _quiet(conn: Any) -> bool:
    """Whether ``conn`` is connected with nothing to read (nothing buffered, nothing on its
    plain TCP or Unix socket): what ``ConnectionPool.ensure_connection`` checks."""
    sock = getattr(conn, "_sock", None)
    buffer = getattr(getattr(conn, "_parser", None), "_buffer", None)
    if sock is None or buffer is None or type(sock) is not socket.socket:
        return False
    unread = getattr(buffer, "unread_bytes", None)
    if unread is None or unread():
        return False
    try:
        readable = select.select((sock,), (), (), 0)[0]
    except (OSError, ValueError):  # closed meanwhile
        return False
    return not readable


def _checkin(pool: Any, conn: Any, fast: bool) -> None:
    """Give back what ``_checkout`` took: as ``ConnectionPool.release`` does for a plain pool
    (a connection marked for reconnection is disconnected first), or by ``release``."""
    if not fast:
        pool.release(conn)
        return
    if pool.pid != _pid:
        pool._checkpid()
    with pool._lock:
        try:
            pool._in_use_connections.remove(conn)
        except KeyError:  # not the pool's any more (reset after a fork, disconnected)
            return
        if getattr(conn, "pid", pool.pid) != pool.pid:  # inherited over a fork: not reused
            conn.disconnect()
            return
        should_reconnect = getattr(conn, "should_reconnect", None)
        if should_reconnect is not None and should_reconnect():
            conn.disconnect()
        pool._available_connections.append(conn)


def _send_and_read(conn: Any, packed: list[bytes]) -> Any:
    conn.send_packed_command(packed)
    return conn.read_response()


def _multi_exec(conn: Any, packed: list[bytes], count: int) -> list[Any]:
    conn.send_packed_command(packed)
    replies = _read_as_lines(conn, count)
    if replies is None:
        # Every reply is read, errors too, so that the connection stays in step: MULTI's OK,
        # one QUEUED per command (or the error that refused it: EXEC then aborts), EXEC's.
        refused: ResponseError | None = None
        for _ in range(count + 1):
            try:
                conn.read_response()
            except ResponseError as exc:
                refused = refused or exc
        try:
            replies = conn.read_response()
        except ResponseError:
            if refused is not None:
                raise refused from None
            raise
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


@functools.cache
def _integer_replies(count: int) -> re.Pattern[bytes]:
    """``count`` ``+QUEUED`` lines, then ``EXEC``'s reply of ``count`` integers (captured)."""
    return re.compile(
        b"(?:\\+QUEUED\r\n){%d}\\*%d\r\n" % (count, count) + b":(-?[0-9]+)\r\n" * count
    )


def _read_as_lines(conn: Any, count: int) -> list[Any] | None:
    """``EXEC``'s replies, having read ``MULTI``'s ``+OK`` and ``count`` ``+QUEUED`` as lines
    from the pure-Python parser's buffer, and ``EXEC``'s too when they are all integers (as an
    enqueue's are): a full parse per reply costs more than the rest of the client's work on an
    enqueue. Anything else is parsed by redis-py from where it starts: ``EXEC``'s reply by
    ``read_response``; None, having read nothing, when ``MULTI`` or a command was refused (the
    caller reads every reply) or the parser is another (hiredis, which parses quickly)."""
    buffer = getattr(getattr(conn, "_parser", None), "_buffer", None)  # None: a cache's proxy
    if buffer is None or not all(
        hasattr(buffer, name) for name in ("readline", "get_pos", "rewind", "purge")
    ):
        return None
    try:
        start = buffer.get_pos()
        readline = buffer.readline
        if readline() != b"+OK":
            buffer.rewind(start)
            return None
        # The rest is in the buffer already (Redis writes a request's replies at once): one
        # match instead of a readline per reply. Anything else is read line by line.
        data = getattr(buffer, "_buffer", None)
        if type(data) is io.BytesIO:
            match = _integer_replies(count).match(data.getvalue(), data.tell())
            if match is not None:
                data.seek(match.end())
                buffer.purge()
                return [int(n) for n in match.groups()]
        for _ in range(count):
            if readline() != b"+QUEUED":
                buffer.rewind(start)
                return None
        exec_start = buffer.get_pos()
        if readline() == b"*%d" % count:
            replies: list[Any] = []
            for _ in range(count):
                line = readline()
                if line[:1] != b":":
                    break
                replies.append(int(line[1:]))
            else:
                buffer.purge()
                return replies
        buffer.rewind(exec_start)
    except BaseException:
        conn.disconnect()  # out of step with its replies: as redis-py does
        raise
    return conn.read_response()  # type: ignore[no-any-return]


__all__ = ["command", "connect", "store_errors", "transaction", "transaction_request"]

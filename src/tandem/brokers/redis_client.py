"""The Redis client of a process: one per server and credentials, shared by every thread.

Also how redis-py's errors reach the rest of tandem: an unreachable Redis is Python's
``ConnectionError`` or ``TimeoutError`` (both ``OSError``), which the supervisor treats as "the
store is unavailable: back off and retry", as it does for the database.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import redis

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


__all__ = ["connect", "store_errors"]

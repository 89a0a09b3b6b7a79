"""Cross-process wake-up: threads that wait on the store and tell the supervisor.

Each broker makes its own (``Broker.listener``); the supervisor only starts and stops it.

PostgreSQL: LISTEN; payloads are ``"<backend alias>:<queue>,<queue>…"`` (see
``DatabaseBroker.notify``). Redis: SUBSCRIBE to the alias's wake channel; messages are
``"<queue>,<queue>…"`` (published by the broker's scripts). Both reconnect with back-off when the
connection drops; while it is down the supervisor still polls. SQLite: a datagram socket beside
the database file, with a commit watcher as its fallback (``tandem.brokers.sqlite_wake``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from django.db import connections

if TYPE_CHECKING:
    from redis.client import PubSub

    from tandem.brokers.redis import RedisBroker

logger = logging.getLogger("tandem.worker")

#: The PostgreSQL channel tandem's NOTIFY wake-ups use (``DatabaseBroker.notify``).
NOTIFY_CHANNEL = "tandem"


class Listener(Protocol):
    """A wake-up source: a thread of its own, calling ``on_wake(queues)`` ([] = look at all)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def connection_kwargs(database: str) -> dict[str, Any]:
    settings = connections[database].settings_dict
    kwargs: dict[str, Any] = {"dbname": settings["NAME"] or "postgres", "autocommit": True}
    for key, name in (
        ("USER", "user"),
        ("PASSWORD", "password"),
        ("HOST", "host"),
        ("PORT", "port"),
    ):
        if settings.get(key):
            kwargs[name] = settings[key]
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "options", "connect_timeout"):
        if key in settings.get("OPTIONS", {}):
            kwargs[key] = settings["OPTIONS"][key]
    return kwargs


class PostgresListener:
    def __init__(self, database: str, backend_alias: str, on_notify: Callable[[list[str]], None]):
        self.kwargs = connection_kwargs(database)
        self.backend_alias = backend_alias
        self.on_notify = on_notify
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tandem-listen", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        try:
            import psycopg
        except ImportError:
            logger.warning(
                "LISTEN/NOTIFY wake-up needs psycopg 3 (pip install 'psycopg[binary]'); "
                "falling back to polling"
            )
            return
        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(**self.kwargs) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.connected.set()
                    delay = 0.5
                    # Anything enqueued while we were (re)connecting: let the supervisor look.
                    self.on_notify([])
                    while not self._stop.is_set():
                        # A short timeout keeps stop() quick; the wait itself costs nothing.
                        for note in conn.notifies(timeout=0.1):
                            alias, _, queues = note.payload.partition(":")
                            if alias == self.backend_alias:
                                self.on_notify([q for q in queues.split(",") if q])
            except Exception as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                logger.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)


class RedisListener:
    """Cross-process wake-up on Redis: a thread SUBSCRIBEd to the backend's wake channel.

    The broker's scripts publish the queues that got claimable tasks (push, release, recovery,
    a retry due at once). The thread blocks in a read on its own connection; ``timeout`` only
    bounds how long ``stop()`` waits. ``wakes`` counts the messages received.
    """

    def __init__(
        self,
        broker: RedisBroker,
        on_notify: Callable[[list[str]], None],
        timeout: float = 0.25,
    ) -> None:
        self.broker = broker
        self.on_notify = on_notify
        self.timeout = timeout
        self.wakes = 0
        self.connected = threading.Event()
        self._pubsub: PubSub | None = None  # the current subscription
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tandem-redis-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        import redis

        delay = 0.5
        while not self._stop.is_set():
            pubsub = self._pubsub = self.broker.pubsub()
            try:
                pubsub.subscribe(self.broker.wake_channel)
                while not self._stop.is_set():  # until Redis confirms the subscription
                    message = pubsub.get_message(timeout=self.timeout)
                    if message is not None and message["type"] == "subscribe":
                        break
                else:
                    return
                self.connected.set()
                delay = 0.5
                # Anything made claimable while we were (re)connecting: let the supervisor look.
                self.on_notify([])
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=self.timeout)
                    if message is not None and message["type"] == "message":
                        self.wakes += 1
                        self.on_notify([q for q in str(message["data"]).split(",") if q])
            except (redis.RedisError, OSError) as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                logger.warning(
                    "Redis wake-up subscription lost (%s); reconnecting in %.1fs", exc, delay
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
            finally:
                pubsub.close()

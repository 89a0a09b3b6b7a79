"""The store watch: no store call of a worker blocks for longer than a lease.

A connection whose network went silent (packets dropped, no reset) leaves a call on it blocked in
a read that only TCP ends, after hours with the default settings; a worker blocked like that
cannot settle, claim or drain, and a ``SIGTERM`` finds it deaf. So the supervisor's round and the
heartbeat's renewal run *guarded*: a thread of the watch checks every ``limit / 4`` seconds, and
cuts the connection of any guarded call that has been running for ``limit`` seconds (one lease:
by then the leases it was meant to keep are lost anyway, and the lease guard has stopped their
attempts). The call then fails with a store error, and the caller does what it does for any store
error: back off, reconnect, try again. How a connection is cut is the broker's
(``Broker.connection_cutter()``): the database broker shuts the socket down; Redis calls end by the
client's own socket timeout; SQLite and the memory twin have no network to wait on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import DatabaseError, InterfaceError

from tandem.brokers.base import Broker

logger = logging.getLogger("tandem.worker")

#: What a store call raises when the store is down, slow or cut off: the caller backs off and
#: tries again (a broken connection, a refused one, one the watch cut).
STORE_ERRORS = (DatabaseError, InterfaceError, ConnectionError, OSError)


@dataclass(slots=True)
class _Call:
    what: str
    started: float  # monotonic
    cut: Callable[[], bool]
    done_cutting: bool = False


class StoreWatch:
    """Cuts the connection of every guarded store call that blocks longer than ``limit`` s."""

    def __init__(
        self,
        broker: Broker,
        limit: float,
        *,
        worker_id: str = "",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.limit = limit
        self.worker_id = worker_id
        self._monotonic = monotonic
        self._calls: dict[int, _Call] = {}  # by the id of the guard's own token
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.cuts = 0  # connections cut

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Store calls made by this thread inside the block may be cut after ``limit`` s."""
        token = object()
        call = _Call(what=what, started=self._monotonic(), cut=self.broker.connection_cutter())
        with self._lock:
            self._calls[id(token)] = call
        try:
            yield
        finally:
            with self._lock:
                del self._calls[id(token)]

    def check(self) -> int:
        """Cut every guarded call blocked for ``limit`` s (each once); return how many."""
        now = self._monotonic()
        with self._lock:
            overdue = [
                c
                for c in self._calls.values()
                if not c.done_cutting and now - c.started >= self.limit
            ]
        cut = 0
        for call in overdue:
            if not call.cut():
                continue  # not connected (yet): nothing to cut; checked again next time
            call.done_cutting = True
            cut += 1
            self.cuts += 1
            logger.error(
                "a store call (%s) of worker %s was blocked for %.1fs, longer than the lease: "
                "its connection was cut (a silent network?); it fails and is tried again on a "
                "new connection",
                call.what,
                self.worker_id,
                now - call.started,
                extra={"worker_id": self.worker_id},
            )
        return cut

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="tandem-store-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stopping.wait(self.limit / 4):
            try:
                self.check()
            except Exception:
                logger.exception("the store watch failed; checking again")


__all__ = ["STORE_ERRORS", "StoreWatch"]

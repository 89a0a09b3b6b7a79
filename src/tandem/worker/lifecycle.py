"""How a supervisor starts and stops: registering the worker, starting the pools and the
wake-up listener (``start``), waiting for a store that is down at start-up, backing off after a
store error, releasing in-flight attempts on a forced stop (``_release_all``), waiting for the
recovery of stopped attempts before a burst ends (``_awaiting_recovery``), and leaving
(``close``).

``Lifecycle`` is a base of ``tandem.worker.supervisor.Supervisor``, which sets its attributes up.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime

from tandem import wakeup
from tandem.brokers.base import RUNNING, Broker, WorkerInfo
from tandem.brokers.listeners import Listener
from tandem.conf import SUBINTERPRETERS_AVAILABLE, BackendOptions
from tandem.worker.bookkeeping import Bookkeeping
from tandem.worker.heartbeat import Heartbeat
from tandem.worker.signalling import FinishedSignals
from tandem.worker.store_watch import STORE_ERRORS, StoreWatch

logger = logging.getLogger("tandem.worker")


class Lifecycle(Bookkeeping):
    """Start-up and shutdown (set up by ``Supervisor.__init__``)."""

    broker: Broker
    options: BackendOptions
    clock: Callable[[], datetime]
    listen: bool
    heartbeat: Heartbeat
    signals: FinishedSignals
    store_watch: StoreWatch
    store_errors: int
    _started: bool
    _listener: Listener | None
    _next_heartbeat: datetime | None
    _said_awaiting: bool
    burst: bool

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.choose_executors()  # before the registry shows the pools
        now = self.clock()
        try:
            self.broker.prepare()
            self.broker.register_worker(
                WorkerInfo(
                    id=self.worker_id,
                    backend=self.backend.alias,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    queues=self.queues,
                    pools=self.pool_states(),
                    started_at=now,
                    last_heartbeat_at=now,
                )
            )
        except BaseException:
            self._started = False  # a store that is down fails the start before anything runs
            raise
        if not SUBINTERPRETERS_AVAILABLE and "executor" not in (self.backend.options or {}):
            logger.info(
                "Python %s has no subinterpreters with their own GIL (3.14+): the pools run "
                "on threads. Set OPTIONS['executor'] to 'thread' or 'process' to silence this.",
                sys.version.split()[0],
            )
        for state in self.pools:
            # A worker that becomes ready later (a subinterpreter setting Django up) gets its
            # first task at once, not at the next poll.
            state.pool.on_ready = functools.partial(self.notify, state.config.queues)
            state.pool.start()
        wakeup.subscribe(self.backend.alias, self._on_enqueue)
        self._start_listener()
        self._next_heartbeat = now  # recover stale leases straight away

    def _start_listener(self) -> None:
        """Cross-process wake-up, as the store offers it (``Broker.listener``: LISTEN on
        PostgreSQL, commit watching on a SQLite file, SUBSCRIBE on Redis)."""
        if not self.listen:
            return
        listener = self.broker.listener(self.notify)
        if listener is not None:
            listener.start()
            self._listener = listener

    def _work_announced(self) -> bool:
        """Whether new work reaches this worker as a wake-up: its listener listens (the store
        announces every task made claimable: an enqueue, a release, a recovery, a freed
        concurrency slot), and this is no burst (that ends when a claim finds nothing).

        Then a pool whose last claim found fewer tasks than it asked for is not claimed for
        again when one of its tasks ends: its queues had nothing more, and anything enqueued
        since comes with a wake-up (``notify``: claim at once), which is never lost (a wake-up
        during a claim makes the pool claim again, ``claim_for_pool``). Without it, a paced
        stream of tasks cost a second, empty claim per task. A retry (a READY ending) is claimed
        for at once, as a due task delayed later is found by the next poll."""
        listener = self._listener
        if listener is None or self.burst:
            return False
        listening = getattr(listener, "connected", None) or getattr(listener, "ready", None)
        return listening is None or listening.is_set()

    def close(self) -> bool:
        """Stop pools and listener, send the pending ``task_finished`` signals and leave the
        registry; in-flight work must be settled first.

        Returns True when every pool's workers ended (False after a forced stop left busy
        workers behind: threads, interpreters or children still running a released task).
        """
        forced = self._stopping == 2
        requests = self._stop_requests
        clean = True
        self.heartbeat.stop()
        for state in self.pools:
            clean = state.pool.stop(timeout=0 if forced else None) and clean
        # The pending task_finished sends go out before the worker exits; a stop request made
        # while they wait on a receiver gives up on them.
        self.signals.close(give_up=lambda: self._stop_requests > requests)
        wakeup.unsubscribe(self.backend.alias, self._on_enqueue)
        if self._listener is not None:
            self._listener.stop()
        try:
            with self.store_watch.guard("leaving the registry"):
                self.broker.unregister_worker(self.worker_id)
        except STORE_ERRORS:
            logger.warning("could not remove worker %s from the registry", self.worker_id)
        self.store_watch.stop()
        from django.db import connections

        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:  # (a caller's transaction is the caller's)
                connection.close()  # this thread's connections: Django's are per thread
        return clean

    def _release_all(self, now: datetime) -> None:
        for state in self.pools:
            attempts = {t.id: t.attempt_token for t in state.in_flight.values()}
            if attempts:
                released = self.broker.release(self.worker_id, attempts, now)
                logger.warning("released %d in-flight task(s) back to READY", released)
                if released < len(attempts):
                    logger.warning(
                        "the store rejected the release of %d stale attempt(s) (their lease "
                        "was lost: the attempt that holds it now decides their ending)",
                        len(attempts) - released,
                        extra={"worker_id": self.worker_id},
                    )
                with self._flight_lock:
                    for task in state.in_flight.values():
                        self.heartbeat.forget(task.id, task.attempt_token)
                    state.in_flight.clear()

    def _awaiting_recovery(self) -> bool:
        """Burst mode: whether an attempt this worker stopped for a lost lease still holds its
        row (RUNNING under the lapsed lease, nobody else's yet). The burst goes on until the
        heartbeat's recovery gives such a row back (once the lease has expired on the store) and
        a claim runs it, or another worker has taken it: a burst ends with its queues drained,
        never with a task left RUNNING that nobody runs."""
        if not self._unrecovered:
            return False
        try:
            rows = [(self.broker.get(task_id), token) for task_id, token in self._unrecovered]
        except STORE_ERRORS:
            return True  # the loop meets the outage in its next round
        self._unrecovered = [
            (row.id, token)
            for row, token in rows
            if row is not None and row.status == RUNNING and row.attempt_token == token
        ]
        if self._unrecovered and not self._said_awaiting:
            self._said_awaiting = True
            logger.warning(
                "burst: waiting for %d stopped attempt(s) to be recovered before exiting "
                "(their leases expire within %gs)",
                len(self._unrecovered),
                self.options.lease_seconds,
                extra={"worker_id": self.worker_id},
            )
        return bool(self._unrecovered)

    def _start_when_the_store_answers(self) -> None:
        """``start()``, retried with the claim loop's back-off while the store is unreachable
        (a worker started during an outage waits for the store instead of crashing); a stop
        request ends the wait."""
        delay = 0.5
        while not self._started and not self._stopping:
            try:
                with self.store_watch.guard("the start"):
                    self.start()
            except STORE_ERRORS as exc:
                self.store_errors += 1
                logger.error("task store unavailable at start (%s); retrying in %.1fs", exc, delay)
                self._close_connections()
                self._back_off(delay)
                delay = min(delay * 2, 30.0)

    def _back_off(self, seconds: float) -> None:
        """Wait ``seconds`` after a store error; only a stop request cuts the wait short.

        Outcomes the pools deliver meanwhile wait for the next attempt: waking for each of them
        would retry a store that is down once per outcome, doubling the delay every time.
        """
        deadline = time.monotonic() + seconds
        stopping = self._stopping
        while self._stopping == stopping and (left := deadline - time.monotonic()) > 0:
            self._wake.wait(left)
            self._wake.clear()

    @staticmethod
    def _close_connections() -> None:
        from django.db import connections

        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()


__all__ = ["Lifecycle"]

"""Leases: renewing them on a thread of their own, and stopping attempts whose lease is lost.

The supervisor's claim loop backs off for up to 30 s after a store error; a heartbeat that waited
with it would let leases expire during a short outage while their tasks run on. So ``run()``
renews leases here, on a thread that does nothing else (and has its own database connection),
and guards their deadlines on a second thread that never touches the store (a renewal stuck in a
dead connection cannot keep an attempt alive past its lease):

- every ``heartbeat_interval`` (a third of ``lease_seconds``) it renews the leases of every
  attempt in flight, in one statement per pool;
- after a failed renewal it tries again every ``lease_seconds / 6``;
- each attempt has a *deadline* on this host's monotonic clock: the moment its last successful
  claim or renewal was **sent**, plus ``lease_seconds``. The store cannot expire the lease before
  that moment (it started counting later, on its own clock), so an attempt stopped before its
  deadline never overlaps a new attempt elsewhere. An attempt that could not be renewed and whose
  deadline falls before the next check is stopped by its own pool (process: killed;
  subinterpreter: interrupted, then retired; thread: abandoned, its result discarded) and logged.
- an attempt the store says is no longer this worker's (recovered, re-claimed) is stopped the
  same way at once.

``Supervisor.step()`` without ``run()`` (tests stepping the loop) renews inline instead, through
the same ``renew()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connections

from tandem.brokers.base import Broker
from tandem.worker.store_watch import STORE_ERRORS, StoreWatch

logger = logging.getLogger("tandem.worker")

#: An attempt: (task id, attempt token).
Attempt = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class LostAttempt:
    """An attempt its worker stopped because its lease was (or was about to be) lost."""

    task_id: str
    attempt_token: str
    pool: str
    reason: str
    at: float  # when it was stopped (monotonic)
    deadline: float | None  # before which the store cannot expire its lease (monotonic)


class Heartbeat:
    """The lease keeper of one supervisor.

    ``attempts`` returns the attempts in flight per pool name (``{pool: {task id: token}}``);
    ``stop`` ends one attempt in its pool and records it lost (called from this thread).
    """

    def __init__(
        self,
        *,
        broker: Broker,
        worker_id: str,
        lease_seconds: float,
        attempts: Callable[[], Mapping[str, Mapping[str, str]]],
        stop: Callable[[LostAttempt], None],
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        watch: StoreWatch | None = None,
    ) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.renew_every = lease_seconds / 3
        self.check_every = lease_seconds / 6
        self._attempts = attempts
        self._stop_attempt = stop
        self._clock = clock
        self._monotonic = monotonic
        self._store_watch = watch  # cuts a renewal blocked on a silent connection
        self._deadlines: dict[Attempt, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard: threading.Thread | None = None
        self.renewals = 0
        self.failures = 0
        self.stopped: list[LostAttempt] = []  # every attempt stopped, in order

    # -- what the supervisor tells it ----------------------------------------------------------

    def claimed(self, attempts: Mapping[str, str], sent: float) -> None:
        """New attempts, claimed by a statement sent at ``sent`` (monotonic)."""
        with self._lock:
            for task_id, token in attempts.items():
                self._deadlines[(task_id, token)] = sent + self.lease_seconds

    def forget(self, task_id: str, token: str) -> None:
        """The attempt ended (settled, released or stopped): no lease to keep."""
        with self._lock:
            self._deadlines.pop((task_id, token), None)

    def forget_all(self, attempts: Iterable[Attempt]) -> None:
        """``forget()`` for a batch of attempts (taking the lock once)."""
        with self._lock:
            for attempt in attempts:
                self._deadlines.pop(attempt, None)

    def deadline(self, task_id: str, token: str) -> float | None:
        with self._lock:
            return self._deadlines.get((task_id, token))

    # -- renewing ------------------------------------------------------------------------------

    def renew(self, now: datetime | None = None) -> int:
        """Renew the leases of every attempt in flight; stop those the store says are lost.

        Raises the store's error when it is unreachable (nothing is changed then). Returns how
        many leases were renewed.
        """
        now = self._clock() if now is None else now
        renewed = 0
        for pool, attempts in self._attempts().items():
            if not attempts:
                continue
            sent = self._monotonic()
            held = self.broker.renew(self.worker_id, attempts, now + self.lease, now)
            with self._lock:
                for task_id in held:
                    key = (task_id, attempts[task_id])
                    if key in self._deadlines:
                        self._deadlines[key] = sent + self.lease_seconds
            renewed += len(held)
            for task_id, token in attempts.items():
                # (forgotten meanwhile: settled or released by the supervisor, not lost)
                if task_id not in held and self.deadline(task_id, token) is not None:
                    self._lose(
                        LostAttempt(
                            task_id=task_id,
                            attempt_token=token,
                            pool=pool,
                            reason="the store no longer holds its lease for this attempt "
                            "(recovered elsewhere, or settled)",
                            at=self._monotonic(),
                            deadline=self.deadline(task_id, token),
                        )
                    )
        self.renewals += 1
        return renewed

    def stop_overdue(self) -> int:
        """Stop every attempt whose lease may expire before the next check; return how many."""
        limit = self._monotonic() + self.check_every
        current = {
            (task_id, token): pool
            for pool, attempts in self._attempts().items()
            for task_id, token in attempts.items()
        }
        with self._lock:
            overdue = [
                (k, deadline) for k, deadline in self._deadlines.items() if deadline <= limit
            ]
        for key, deadline in overdue:
            pool = current.get(key)
            if pool is None:
                self.forget(*key)  # ended meanwhile
                continue
            self._lose(
                LostAttempt(
                    task_id=key[0],
                    attempt_token=key[1],
                    pool=pool,
                    reason=f"its lease could not be renewed within {self.lease_seconds:g}s "
                    "(the store was unreachable, or this process was paused)",
                    at=self._monotonic(),
                    deadline=deadline,
                )
            )
        return len(overdue)

    def _lose(self, lost: LostAttempt) -> None:
        self.forget(lost.task_id, lost.attempt_token)
        self.stopped.append(lost)
        logger.error(
            "stopping task %s (pool %s, worker %s): %s; another worker may run it again",
            lost.task_id,
            lost.pool,
            self.worker_id,
            lost.reason,
            extra={"task_id": lost.task_id, "worker_id": self.worker_id},
        )
        try:
            self._stop_attempt(lost)
        except Exception:
            logger.exception("could not stop task %s", lost.task_id)

    # -- the thread ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        # Daemon threads: a renewal stuck in a dead connection must not keep the process alive.
        self._thread = threading.Thread(target=self._run, name="tandem-heartbeat", daemon=True)
        self._guard = threading.Thread(target=self._watch, name="tandem-lease-guard", daemon=True)
        self._thread.start()
        self._guard.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in (self._guard, self._thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=max(5.0, self.check_every * 2))

    def _watch(self) -> None:
        """The guard: stop attempts whose deadline comes before the next check (no store I/O)."""
        while not self._stopping.wait(self.check_every / 2):
            try:
                self.stop_overdue()
            except Exception:
                logger.exception("the lease guard failed; checking again")

    def _run(self) -> None:
        next_renewal = self._monotonic() + self.renew_every
        try:
            while not self._stopping.is_set():
                if self._monotonic() >= next_renewal:
                    try:
                        with (
                            self._store_watch.guard("lease renewal")
                            if self._store_watch
                            else nullcontext()
                        ):
                            self.renew()
                    except STORE_ERRORS as exc:
                        self.failures += 1
                        logger.warning(
                            "could not renew leases (%s); trying again in %.1fs",
                            exc,
                            self.check_every,
                        )
                        self._close_connections()
                        next_renewal = self._monotonic() + self.check_every
                    except Exception:
                        logger.exception("lease renewal failed; trying again")
                        next_renewal = self._monotonic() + self.check_every
                    else:
                        next_renewal = self._monotonic() + self.renew_every
                wait = min(self.check_every, max(0.0, next_renewal - self._monotonic()))
                self._stopping.wait(max(wait, 0.01))
        finally:
            connections.close_all()  # this thread's own connections

    @staticmethod
    def _close_connections() -> None:
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()

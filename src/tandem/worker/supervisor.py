"""The supervisor: owns the pools, the claim loop, leases, recovery and shutdown.

It is the only writer of task state in its process: pools hand it ``Outcome``s, it settles them in
batches. The loop is steppable — ``step()`` does one round of settle, heartbeat, claim — and
``run()`` repeats it, sleeping until woken (an outcome, an enqueue in this process, a PostgreSQL
NOTIFY, a Redis wake message) or until the next poll or heartbeat is due.

Shutdown: ``request_stop()`` once drains (no new claims; in-flight tasks finish; exit), twice
forces (in-flight tasks are released back to READY at once).

Around the round: ``worker.bookkeeping`` (pools, attempts in flight, outcomes, wake-ups, stop
requests) and ``worker.lifecycle`` (start-up and shutdown) are the supervisor's bases;
``worker.claiming`` claims for one pool; ``worker.settlement`` turns outcomes into settlements;
``worker.heartbeat`` renews leases.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from itertools import repeat

from django.db import DataError
from django.utils import timezone
from django.utils.crypto import get_random_string

from tandem.backends import tandem_backend
from tandem.brokers.base import (
    READY,
    Broker,
    Settlement,
    StoredTask,
)
from tandem.brokers.listeners import Listener
from tandem.execution import Outcome
from tandem.retention import Retention
from tandem.scheduler.core import Scheduler
from tandem.worker import telemetry
from tandem.worker.bookkeeping import EXIT_POOL_BROKEN
from tandem.worker.claiming import (
    STARVATION_CHECK_MAX,
    STARVATION_CHECKS,
    announce_claim,
    claim_due,
    claim_for_pool,
)
from tandem.worker.heartbeat import Heartbeat, LostAttempt
from tandem.worker.lifecycle import Lifecycle
from tandem.worker.pool_state import PoolState, select_pools
from tandem.worker.pools import create_pool
from tandem.worker.settlement import Settler
from tandem.worker.signalling import FinishedSignals
from tandem.worker.store_watch import STORE_ERRORS, StoreWatch

logger = logging.getLogger("tandem.worker")

Clock = Callable[[], datetime]
#: Seconds between two refreshes of this worker's counts (done, busy) in the registry when they
#: changed, so ``tandem status`` and the dashboard need not wait for the next heartbeat.
LIVE_COUNTS_INTERVAL = 1.0
#: Runs of a round that lost a deadlock (``step``), and the most one waits before the next run.
ROUND_TRIES = 3
DEADLOCK_PAUSE = 0.05


class Supervisor(Lifecycle):
    """Drives one backend's pools: ``step()`` is one round (settle and claim in one write),
    ``run()`` loops it. State kept between rounds is ``Bookkeeping``'s; start-up and shutdown are
    ``Lifecycle``'s."""

    def __init__(
        self,
        backend_alias: str = "default",
        *,
        queues: Sequence[str] | None = None,
        workers: int | None = None,
        burst: bool = False,
        max_tasks: int | None = None,
        broker: Broker | None = None,
        clock: Clock = timezone.now,
        listen: bool = True,
        schedules: bool = True,
    ) -> None:
        backend = tandem_backend(backend_alias)
        self.backend = backend
        self.options = backend.tandem_options
        self.broker = broker or backend.broker
        self.clock = clock
        self.burst = burst
        self.max_tasks = max_tasks
        self.listen = listen
        # At most 40 + 1 + 7 + 1 + 8 characters: fits the 64-character worker id columns.
        self.worker_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{get_random_string(8)}"
        self.lease = timedelta(seconds=self.options.lease_seconds)
        self.heartbeat_every = timedelta(seconds=self.options.heartbeat_interval)
        self.pools = [
            PoolState(
                config=config,
                pool=create_pool(config, self._deliver),
                configured_executor=config.executor,
            )
            for config in select_pools(self.options, queues, workers)
        ]
        self._executors_chosen = False
        self._by_queue = {q: s for s in self.pools for q in s.config.queues}
        self._outcomes: collections.deque[Outcome] = collections.deque()
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._round_ended = 0.0
        self._step_started = 0.0  # monotonic start of the current round (see _claim)
        self._stopping = 0
        self._stop_requests = 0
        self._started = False
        self._next_heartbeat: datetime | None = None
        self._listener: Listener | None = None
        self.claimed = 0
        self.settled = 0
        #: (settled, busy) as the registry last showed them, and when it may be refreshed next.
        self._shown: tuple[int, int] = (0, 0)
        self._next_show: datetime | None = None
        self.store_errors = 0
        self.settler = Settler(self.broker, self.worker_id)
        self.signals = FinishedSignals()  # task_finished, once an ending is stored
        # In-flight attempts change on this thread and are read by the heartbeat's.
        self._flight_lock = threading.Lock()
        self._handing = []
        self._lost: collections.deque[LostAttempt] = collections.deque()
        self._unrecovered = []
        self._said_awaiting = False
        self.lost_attempts = 0
        self.rejected_writes = 0
        self.exit_code = 0  # EXIT_POOL_BROKEN when a pool cannot go on in this process
        self.exit_reason: str | None = None  # why exit_code is not 0
        # ``run()``'s store calls: none blocks for longer than a lease (a silent network).
        self.store_watch = StoreWatch(
            self.broker, self.options.lease_seconds, worker_id=self.worker_id
        )
        self.heartbeat = Heartbeat(
            broker=self.broker,
            worker_id=self.worker_id,
            lease_seconds=self.options.lease_seconds,
            attempts=self._current_attempts,
            stop=self._stop_lost,
            clock=self.clock,
            watch=self.store_watch,
        )
        # Cron schedules (``schedules=False``: ``--no-schedule``) and result retention.
        self.scheduler = (
            Scheduler.for_backend(backend, self.broker)
            if schedules and self.options.run_schedules
            else None
        )
        retention = self.options.retention
        self.retention = Retention(self.broker, retention) if retention.enabled else None

    # -- one round --------------------------------------------------------------------------------

    def step(self) -> int:
        """One round: heartbeat if due, settle outcomes, claim for pools with free slots.

        Settling and claiming share one write transaction (one ``BEGIN IMMEDIATE`` on SQLite,
        one commit on PostgreSQL); claimed tasks reach the pools only after it commits. A round
        with nothing to settle and no pool due to claim (``claim_due``) opens none.
        Returns how many tasks were settled or claimed.

        A round the store rolled back as a deadlock's victim (``Broker.lost_to_deadlock``:
        MariaDB, two workers' keyed claims) wrote nothing and kept its outcomes: it is run again
        at once, up to ``ROUND_TRIES`` runs, rather than backing off as from an outage.
        """
        for run in range(1, ROUND_TRIES + 1):
            try:
                return self._round()
            except STORE_ERRORS as exc:
                if run == ROUND_TRIES or not self.broker.lost_to_deadlock(exc):
                    raise
                pause = random.uniform(0.5, 1.0) * DEADLOCK_PAUSE * run
                logger.debug(
                    "the round lost a deadlock (%s); run %d again in %.3fs",
                    exc,
                    run,
                    pause,
                )
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _round(self) -> int:
        if not self._started:
            self.start()
        self._drop_lost()
        self._check_pools()
        # Before ``now``: a wake-up from here on may name a task enqueued after ``now`` (due
        # later than the claim's clock), so the claim below could miss it (``_claim``).
        self._step_started = time.monotonic()
        now = self.clock()
        if self._next_heartbeat is not None and now >= self._next_heartbeat:
            self._heartbeat(now)
        if self.scheduler is not None and not self._stopping and self.scheduler.due(now):
            self.scheduler.run(now)  # enqueues due ticks; this process's pools are woken
        batch = self._take_outcomes()
        if self._stopping or self._claims_exhausted():
            # No claim follows: settle on its own (one bad row cannot take the others down).
            done = self._commit_settlements(batch, self.settler.write)
            if self._stopping == 2:
                self._release_all(now)
            return done
        # Slots the batch frees, per pool (by id). Settling a task with a concurrency key frees
        # a slot: a task waiting for it may start, here (the pools claim again) and in other
        # workers (woken for the settled queues).
        freeing: dict[int, int] = {}
        freed: set[str] = set()
        for state, task, _ in batch:
            freeing[id(state)] = freeing.get(id(state), 0) + 1
            if task.concurrency_key is not None:
                freed.add(task.queue_name)
        if freed:
            for state in self.pools:
                state.dirty = True
        frees = [state.free + freeing.get(id(state), 0) for state in self.pools]
        if not batch and not any(map(claim_due, self.pools, repeat(now), frees)):
            return 0  # nothing to settle or claim (busy pools woken, say): no transaction
        written: list[bool] = []
        sent = time.monotonic()  # the leases claimed below start no earlier than this
        settlements: list[Settlement] = []
        try:
            settlements = [self.settler.ending(o, t, s.config) for s, t, o in batch]
            with self.broker.transaction():
                if batch:
                    if not freed:  # (a freed slot is seen only by a pick after the settle)
                        self._announce_claim(now, frees)
                    written = self.settler.settle(settlements)
                if freed:
                    self.broker.notify(sorted(freed))  # delivered at commit (PostgreSQL)
                for state, free in zip(self.pools, frees, strict=True):
                    tasks = self._claim(state, now, free)
                    if tasks:  # in flight from now on (``in_flight``: the drain line)
                        self._handing = [*self._handing, (state, tasks)]
        except BaseException as exc:
            # Rolled back: nothing was written or claimed. Outcomes are kept for the next step.
            self._handing = []
            self._outcomes.extendleft(reversed([o for _, _, o in batch]))
            for state in self.pools:
                state.dirty = True
            if isinstance(exc, DataError) and batch:
                # A row the store rejects: settle this batch one by one, claim next round.
                return self._commit_settlements(self._take_outcomes(), self.settler.write)
            raise
        done = self._finish(batch, settlements, written)
        try:
            for state, tasks in self._handing:
                self.heartbeat.claimed({t.id: t.attempt_token for t in tasks}, sent)
                with self._flight_lock:
                    for task in tasks:
                        state.in_flight[task.id] = task
                for task in tasks:
                    state.pool.submit(task)
                self.claimed += len(tasks)
                done += len(tasks)
        finally:
            self._handing = []
        if done:
            self._show_counts(now)
        return done

    def _show_counts(self, now: datetime) -> None:
        """Refresh this worker's counts in the registry when they changed, at most once per
        ``LIVE_COUNTS_INTERVAL`` (the heartbeat refreshes them too)."""
        counts = (self.settled, sum(len(s.in_flight) for s in self.pools))
        if counts == self._shown or (self._next_show is not None and now < self._next_show):
            return
        self._shown = counts
        self._next_show = now + timedelta(seconds=LIVE_COUNTS_INTERVAL)
        self.broker.heartbeat_worker(self.worker_id, now, self.settled, self.pool_states())

    def _claims_exhausted(self) -> bool:
        return self.max_tasks is not None and self.claimed >= self.max_tasks

    def _claim(self, state: PoolState, now: datetime, free: int) -> list[StoredTask]:
        """Claim rows for ``state`` (inside the round's transaction); the caller submits them."""
        if self.max_tasks is not None:
            free = min(free, self.max_tasks - self.claimed)
        return claim_for_pool(
            self.broker,
            state,
            worker_id=self.worker_id,
            lease=self.lease,
            now=now,
            free=free,
            round_started=self._step_started,
        )

    def _announce_claim(self, now: datetime, frees: list[int]) -> None:
        """Announce the round's first claim to the store before its settle, which then sends
        both in one message where it can (``claiming.announce_claim``; the ``_claim`` below, with
        the same arguments, takes its rows). Only for a single pool and a claim of the same
        size as ``_claim``'s."""
        if len(self.pools) != 1:
            return
        free = frees[0]
        if self.max_tasks is not None:
            free = min(free, self.max_tasks - self.claimed)
        announce_claim(
            self.broker,
            self.pools[0],
            worker_id=self.worker_id,
            lease=self.lease,
            now=now,
            free=free,
        )

    def _commit_settlements(
        self,
        batch: list[tuple[PoolState, StoredTask, Outcome]],
        write: Callable[[list[Settlement]], list[bool]],
    ) -> int:
        if not batch:
            return 0
        settlements: list[Settlement] = []
        try:
            settlements = [self.settler.ending(o, t, s.config) for s, t, o in batch]
            written = write(settlements)
        except BaseException:
            # Nothing is lost: the tasks stay in flight (their leases keep being renewed) and
            # the next step writes the same outcomes again.
            self._outcomes.extendleft(reversed([o for _, _, o in batch]))
            raise
        return self._finish(batch, settlements, written)

    def _finish(
        self,
        batch: list[tuple[PoolState, StoredTask, Outcome]],
        settlements: list[Settlement],
        written: list[bool],
    ) -> int:
        """Forget the settled attempts (their endings are committed); report those whose ending
        the store took and send their ``task_finished``, and log the stale ones it rejected
        (their lease was lost: a newer attempt's ending counts, and they send no signal)."""
        announced = self._work_announced()
        with self._flight_lock:
            for (state, task, _), settlement in zip(batch, settlements, strict=True):
                del state.in_flight[task.id]
                # A freed slot: claim, unless the last claim found nothing (``_work_announced``).
                empty = announced and state.exhausted and not state.config.rate_limit
                if not empty or settlement.status == READY:
                    state.dirty = True
        self.heartbeat.forget_all([(task.id, task.attempt_token) for _, task, _ in batch])
        stored = []
        sender = type(self.backend)
        self.signals.batch()
        for (_, task, outcome), settlement, kept in zip(batch, settlements, written, strict=True):
            ending = self.settler.stored_as(settlement)  # (FAILED if its value was refused)
            if kept:
                stored.append((task, settlement))
                self.signals.stored(sender, task, outcome, ending)
                continue
            self.rejected_writes += 1
            logger.warning(
                "the store rejected the outcome of a stale attempt of task %s (attempt %d): its "
                "lease was lost, so the attempt that holds it now decides the task's ending",
                task.id,
                task.attempts,
                extra={"task_id": task.id, "worker_id": self.worker_id, "attempt": task.attempts},
            )
        self.settled += len(stored)
        telemetry.settled(self, stored)
        return len(batch)

    def _heartbeat(self, now: datetime) -> None:
        self._next_heartbeat = now + self.heartbeat_every
        for state in self.pools:
            ids = list(state.in_flight)
            if ids and (state.pool.can_kill or state.pool.runs_coroutines):
                for task_id in self.broker.cancel_requested(ids):
                    if state.pool.cancel(task_id):
                        logger.warning(
                            "killed cancelled task %s (pool %s)", task_id, state.config.name
                        )
        if not self.heartbeat.running:  # (``run()`` renews on the heartbeat's own thread)
            self.heartbeat.renew(now)
        self.broker.heartbeat_worker(self.worker_id, now, self.settled, self.pool_states())
        self._shown = (self.settled, sum(len(s.in_flight) for s in self.pools))
        recovered_tasks = self.broker.recover_expired(now, self.options.recovery_max_attempts)
        telemetry.recovered(self, recovered_tasks)
        for recovered in recovered_tasks:
            logger.warning(
                "recovered task %s from lost worker %s -> %s",
                recovered.id,
                recovered.worker_id,
                recovered.status,
            )
            if recovered.status == READY:
                for state in self.pools:
                    state.dirty = True  # claim it in this round, not at the next poll
        self.broker.forget_workers(now - 3 * self.lease)
        if self.retention is not None:
            self.retention.apply(now)  # at most every RETENTION_INTERVAL

    # -- the loop ---------------------------------------------------------------------------------

    def finished(self) -> bool:
        """Whether ``run()`` should return now."""
        if self._stopping == 2:
            # Only once released: a force that arrived mid-step is acted on by the next step.
            return not self.in_flight
        if self.in_flight or self._outcomes:
            return False
        if self._stopping == 1 or self._claims_exhausted():
            return True
        return (
            self.burst
            and all(s.exhausted and not s.dirty for s in self.pools)
            and not self._awaiting_recovery()
        )

    def _sleep_for(self) -> float:
        now = self.clock()
        moments = [self._next_heartbeat] if self._next_heartbeat else []
        if not self._stopping:
            moments += [s.next_poll for s in self.pools if s.free > 0 and s.next_poll]
            if self.scheduler is not None and self.scheduler.next_at is not None:
                moments.append(self.scheduler.next_at)  # wake for the next tick
        if not moments:
            return self.options.heartbeat_interval
        return max(0.0, min((m - now).total_seconds() for m in moments))

    def run(self) -> None:
        """Loop until stopped (or, in burst mode, until the queues are empty)."""
        self.store_watch.start()
        self._start_when_the_store_answers()
        if not self._started:
            self.close()
            return
        self.heartbeat.start()
        error_delay = 0.5
        completed = False
        try:
            while True:
                try:
                    with self.store_watch.guard("the claim loop"):
                        worked = self.step()
                    self._round_ended = time.monotonic()
                    error_delay = 0.5
                except STORE_ERRORS as exc:
                    self.store_errors += 1
                    logger.error("task store unavailable (%s); retrying in %.1fs", exc, error_delay)
                    if self._stopping == 2:
                        break  # forced stop: the leases expire and any supervisor recovers
                    self._close_connections()
                    self._back_off(error_delay)
                    error_delay = min(error_delay * 2, 30.0)
                    continue
                if self.finished():
                    break
                if worked and any(s.dirty and s.free > 0 for s in self.pools):
                    continue
                self._wake.wait(self._sleep_for())
                self._wake.clear()
                self._gather_endings()
            completed = True
        finally:
            if not completed:
                # Something unexpected escaped the loop: give in-flight tasks back, don't wait.
                self._stopping = 2
                try:
                    self._release_all(self.clock())
                except Exception:
                    logger.exception("could not release in-flight tasks; their leases will expire")
            self.close()


__all__ = [
    "EXIT_POOL_BROKEN",
    "LIVE_COUNTS_INTERVAL",
    "STARVATION_CHECKS",
    "STARVATION_CHECK_MAX",
    "STORE_ERRORS",
    "Supervisor",
    "select_pools",
]

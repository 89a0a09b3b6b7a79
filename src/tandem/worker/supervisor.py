"""The supervisor: owns the pools, the claim loop, leases, recovery and shutdown.

It is the only writer of task state in its process: pools hand it ``Outcome``s, it settles them in
batches. The loop is steppable — ``step()`` does one round of settle, heartbeat, claim — and
``run()`` repeats it, sleeping until woken (an outcome, an enqueue in this process, a PostgreSQL
NOTIFY, a Redis wake message) or until the next poll or heartbeat is due.

Shutdown: ``request_stop()`` once drains (no new claims; in-flight tasks finish; exit), twice
forces (in-flight tasks are released back to READY at once).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import DataError
from django.utils import timezone
from django.utils.crypto import get_random_string

from tandem import wakeup
from tandem.backends import tandem_backend
from tandem.brokers.base import (
    READY,
    Broker,
    Settlement,
    StoredTask,
    WorkerInfo,
)
from tandem.brokers.listeners import Listener
from tandem.conf import SUBINTERPRETERS_AVAILABLE, BackendOptions, PoolConfig
from tandem.execution import Outcome
from tandem.retention import Retention
from tandem.scheduler.core import Scheduler
from tandem.worker import telemetry
from tandem.worker.heartbeat import Heartbeat, LostAttempt
from tandem.worker.pools import create_pool, startup
from tandem.worker.pools.base import ExecutionPool
from tandem.worker.pools.startup import StartupFailure
from tandem.worker.settlement import Settler
from tandem.worker.store_watch import STORE_ERRORS, StoreWatch

logger = logging.getLogger("tandem.worker")

Clock = Callable[[], datetime]
#: The exit status of a worker whose pool broke (too many stuck interpreters): restart it.
EXIT_POOL_BROKEN = 75
#: Seconds between two refreshes of this worker's counts (done, busy) in the registry when they
#: changed, so ``tandem status`` and the dashboard need not wait for the next heartbeat.
LIVE_COUNTS_INTERVAL = 1.0
#: The starvation check (``Broker.claim_starved``) runs at most every ``starvation_limit``
#: divided by this, and at most this many seconds apart (10 s for the default 300 s limit).
STARVATION_CHECKS = 30
STARVATION_CHECK_MAX = 10.0


@dataclass(slots=True)
class _PoolState:
    config: PoolConfig
    pool: ExecutionPool
    in_flight: dict[str, StoredTask] = field(default_factory=dict)
    next_poll: datetime | None = None
    dirty: bool = True
    exhausted: bool = False
    configured_executor: str = ""
    startup_error: StartupFailure | None = None  # why it does not run on configured_executor
    next_starvation_check: datetime | None = None
    woken: float = 0.0  # monotonic time of the last wake-up naming this pool's queues

    @property
    def free(self) -> int:
        """How many more tasks to claim: free workers (those ready: a starting pool's workers
        count as each becomes ready), plus what the pool buffers ahead."""
        pool = self.pool
        return pool.ready_workers() + pool.prefetch() + pool.async_room() - len(self.in_flight)


def select_pools(
    options: BackendOptions, queues: Sequence[str] | None, workers: int | None
) -> tuple[PoolConfig, ...]:
    """The pools a supervisor runs: all, or those serving ``queues`` (narrowed to them)."""
    from dataclasses import replace

    pools = []
    wanted = set(queues or ())
    for pool in options.pools:
        served = tuple(q for q in pool.queues if not wanted or q in wanted)
        if served:
            pools.append(replace(pool, queues=served, workers=workers if workers else pool.workers))
    missing = wanted - {q for p in pools for q in p.queues}
    if missing:
        raise ImproperlyConfigured(
            f"Queue(s) {', '.join(sorted(map(repr, missing)))} are served by no pool of "
            f"TASKS[{options.alias!r}]; known queues: "
            f"{', '.join(sorted(q for p in options.pools for q in p.queues))}."
        )
    return tuple(pools)


class Supervisor:
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
            _PoolState(
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
        self._step_started = 0.0  # monotonic start of the current round (see _claim)
        self._stopping = 0
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
        # In-flight attempts change on this thread and are read by the heartbeat's.
        self._flight_lock = threading.Lock()
        self._lost: collections.deque[LostAttempt] = collections.deque()
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

    # -- wiring --------------------------------------------------------------------------------

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(q for s in self.pools for q in s.config.queues)

    @property
    def in_flight(self) -> int:
        return sum(len(s.in_flight) for s in self.pools)

    def _current_attempts(self) -> dict[str, dict[str, str]]:
        """The attempts in flight, per pool: ``{pool: {task id: attempt token}}`` (any thread)."""
        with self._flight_lock:
            return {
                s.config.name: {i: t.attempt_token for i, t in s.in_flight.items()}
                for s in self.pools
            }

    def _stop_lost(self, lost: LostAttempt) -> None:
        """Stop an attempt whose lease is lost, in its pool, now (called by the heartbeat); the
        supervisor's thread forgets it at its next step."""
        self.lost_attempts += 1
        for state in self.pools:
            if state.config.name == lost.pool:
                state.pool.stop_attempt(lost.task_id, lost.attempt_token)
        self._lost.append(lost)
        self._wake.set()

    def _check_pools(self) -> None:
        """A broken pool (see ``ExecutionPool.broken``) stops this supervisor: in-flight tasks
        are released and ``exit_code`` tells the command to exit non-zero, to be restarted."""
        for state in self.pools:
            if state.pool.broken and self.exit_code == 0:
                logger.critical(
                    "%s: releasing in-flight tasks and exiting for a restart", state.pool.broken
                )
                self.exit_code = EXIT_POOL_BROKEN
                self.exit_reason = state.pool.broken
                self.request_stop(force=True)

    def _drop_lost(self) -> None:
        """Forget attempts the heartbeat stopped: their outcomes, if any come, are discarded."""
        while self._lost:
            lost = self._lost.popleft()
            for state in self.pools:
                task = state.in_flight.get(lost.task_id)
                if task is not None and task.attempt_token == lost.attempt_token:
                    with self._flight_lock:
                        del state.in_flight[lost.task_id]
                    state.dirty = True

    def _deliver(self, outcome: Outcome) -> None:  # called from pool threads
        self._outcomes.append(outcome)
        self._wake.set()

    def notify(self, queues: Sequence[str]) -> None:
        """New work on ``queues`` (all when empty): claim at the next step. Thread-safe."""
        woken = time.monotonic()
        for queue in queues or self.queues:
            state = self._by_queue.get(queue)
            if state is not None:
                state.woken, state.dirty = woken, True
        if not queues:
            for state in self.pools:
                state.woken, state.dirty = woken, True
        self._wake.set()

    def _on_enqueue(self, queue: str) -> None:
        self.notify([queue])

    def request_stop(self, force: bool = False) -> None:
        """First call: drain. Second call (or ``force``): release in-flight tasks and stop."""
        self._stopping = 2 if force or self._stopping else 1
        self._wake.set()

    @property
    def stopping(self) -> int:
        return self._stopping

    def pool_states(self) -> dict[str, dict[str, object]]:
        """What the worker registry shows of each pool: queues, size, the executor really in
        use (and the configured one with the start-up failure when they differ), restarts, and
        why its workers cannot start (``failing``) while they cannot."""
        return {
            s.config.name: {
                "queues": list(s.config.queues),
                "workers": s.config.workers,
                "executor": s.config.executor,
                "configured_executor": s.configured_executor,
                "startup_error": s.startup_error.describe() if s.startup_error else None,
                "restarts": s.pool.restarts,
                "in_flight": len(s.in_flight),
                **s.pool.describe(),
            }
            for s in self.pools
        }

    def choose_executors(self) -> None:
        """Prove that each subinterpreter pool's first worker can set Django up and import the
        pool's task modules; a pool whose worker cannot runs on processes (or threads) instead,
        with one notice (``tandem.worker.pools.startup``). Done once, before the pools start."""
        if self._executors_chosen:
            return
        self._executors_chosen = True
        for state in self.pools:
            state.config, state.pool, state.startup_error = startup.choose(
                self.backend.alias, state.config, state.pool, self._deliver
            )

    # -- lifecycle -----------------------------------------------------------------------------

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

    def close(self) -> bool:
        """Stop pools and listener and leave the registry; in-flight work must be settled first.

        Returns True when every pool's workers ended (False after a forced stop left busy
        workers behind: threads, interpreters or children still running a released task).
        """
        forced = self._stopping == 2
        clean = True
        self.heartbeat.stop()
        for state in self.pools:
            clean = state.pool.stop(timeout=0 if forced else None) and clean
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

    # -- one round -----------------------------------------------------------------------------

    def step(self) -> int:
        """One round: heartbeat if due, settle outcomes, claim for pools with free slots.

        Settling and claiming share one write transaction (one ``BEGIN IMMEDIATE`` on SQLite,
        one commit on PostgreSQL); claimed tasks reach the pools only after it commits.
        Returns how many tasks were settled or claimed.
        """
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
        claiming = not self._stopping and not self._claims_exhausted()
        if not claiming:
            # No claim follows: settle on its own (one bad row cannot take the others down).
            done = self._commit_settlements(batch, self.settler.write)
            batch = []
            if self._stopping == 2:
                self._release_all(now)
            if not claiming:
                return done
        else:
            done = 0
        claims: list[tuple[_PoolState, list[StoredTask]]] = []
        settled_per_pool = collections.Counter(id(state) for state, _, _ in batch)
        # Settling a task with a concurrency key frees a slot: a task waiting for it may start,
        # here (the pools claim again) and in other workers (woken for the settled queues).
        freed = sorted({t.queue_name for _, t, _ in batch if t.concurrency_key is not None})
        if freed:
            for state in self.pools:
                state.dirty = True
        written: list[bool] = []
        sent = time.monotonic()  # the leases claimed below start no earlier than this
        settlements: list[Settlement] = []
        try:
            settlements = [self.settler.ending(o, t, s.config) for s, t, o in batch]
            with self.broker.transaction():
                if batch:
                    written = self.settler.settle(settlements)
                if freed:
                    self.broker.notify(freed)  # delivered at commit (PostgreSQL)
                for state in self.pools:
                    tasks = self._claim(state, now, state.free + settled_per_pool[id(state)])
                    if tasks:
                        claims.append((state, tasks))
        except BaseException as exc:
            # Rolled back: nothing was written or claimed. Outcomes are kept for the next step.
            self._outcomes.extendleft(reversed([o for _, _, o in batch]))
            for state in self.pools:
                state.dirty = True
            if isinstance(exc, DataError) and batch:
                # A row the store rejects: settle this batch one by one, claim next round.
                return self._commit_settlements(self._take_outcomes(), self.settler.write)
            raise
        done += self._finish(batch, settlements, written)
        for state, tasks in claims:
            self.heartbeat.claimed({t.id: t.attempt_token for t in tasks}, sent)
            with self._flight_lock:
                for task in tasks:
                    state.in_flight[task.id] = task
            for task in tasks:
                state.pool.submit(task)
            self.claimed += len(tasks)
            done += len(tasks)
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

    def _claim(self, state: _PoolState, now: datetime, free: int) -> list[StoredTask]:
        """Claim rows for ``state`` (inside the round's transaction); the caller submits them."""
        if self.max_tasks is not None:
            free = min(free, self.max_tasks - self.claimed)
        if free <= 0:
            return []
        due = state.next_poll is None or now >= state.next_poll
        if not (state.dirty or due):
            return []
        state.dirty = False
        claimed = self._claim_starved(state, now, free)
        if len(claimed) < free:
            claimed += self.broker.claim(
                state.config.queues,
                free - len(claimed),
                self.worker_id,
                now + self.lease,
                now,
                rate_limit=state.config.rate_limit,
            )
        state.exhausted = len(claimed) < free
        if state.exhausted and state.woken >= self._step_started:
            # Woken during this round: the task may have been enqueued after ``now`` (due
            # later than this claim could see). Claim again at once, with a fresh clock, rather
            # than wait for the next poll: the wake-up would be lost.
            state.dirty = True
        elif state.exhausted:
            state.next_poll = now + timedelta(seconds=state.config.poll_interval)
        else:
            state.dirty = True  # there may be more; claim again as soon as a slot frees
        return claimed

    def _claim_starved(self, state: _PoolState, now: datetime, free: int) -> list[StoredTask]:
        """Tasks that waited past the pool's ``starvation_limit``, whatever their priority,
        ahead of the usual claim. Checked now and then (``STARVATION_CHECKS``), and again at
        once while it finds more than the free slots take."""
        due = state.next_starvation_check
        if due is not None and now < due:
            return []
        limit = state.config.starvation_limit
        starved = self.broker.claim_starved(
            state.config.queues,
            free,
            self.worker_id,
            now + self.lease,
            now,
            now - timedelta(seconds=limit),
            rate_limit=state.config.rate_limit,
        )
        if len(starved) < free:
            pause = min(limit / STARVATION_CHECKS, STARVATION_CHECK_MAX)
            state.next_starvation_check = now + timedelta(seconds=pause)
        return starved

    def _take_outcomes(self) -> list[tuple[_PoolState, StoredTask, Outcome]]:
        batch: list[tuple[_PoolState, StoredTask, Outcome]] = []
        while self._outcomes:
            outcome = self._outcomes.popleft()
            for state in self.pools:
                task = state.in_flight.get(outcome.task_id)
                if task is not None and task.attempt_token == outcome.attempt_token:
                    batch.append((state, task, outcome))
                    break
            else:
                # Released, recovered or stopped meanwhile: that attempt's lease is gone.
                logger.warning(
                    "discarded the outcome of a stale attempt of task %s (its lease was lost)",
                    outcome.task_id,
                    extra={"task_id": outcome.task_id, "worker_id": self.worker_id},
                )
        return batch

    def _commit_settlements(
        self,
        batch: list[tuple[_PoolState, StoredTask, Outcome]],
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
        batch: list[tuple[_PoolState, StoredTask, Outcome]],
        settlements: list[Settlement],
        written: list[bool],
    ) -> int:
        """Forget the settled attempts; report those whose ending the store took, and log the
        stale ones it rejected (their lease was lost: a newer attempt's ending counts)."""
        with self._flight_lock:
            for state, task, _ in batch:
                del state.in_flight[task.id]
                state.dirty = True
        stored = []
        for (_, task, _), settlement, kept in zip(batch, settlements, written, strict=True):
            self.heartbeat.forget(task.id, task.attempt_token)
            if kept:
                stored.append((task, settlement))
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

    # -- the loop ------------------------------------------------------------------------------

    def finished(self) -> bool:
        """Whether ``run()`` should return now."""
        if self._stopping == 2:
            # Only once released: a force that arrived mid-step is acted on by the next step.
            return not self.in_flight
        if self.in_flight or self._outcomes:
            return False
        if self._stopping == 1 or self._claims_exhausted():
            return True
        return self.burst and all(s.exhausted and not s.dirty for s in self.pools)

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

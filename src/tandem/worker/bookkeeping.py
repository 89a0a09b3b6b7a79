"""What a supervisor keeps track of between rounds: its pools and their attempts in flight, the
outcomes the pools delivered, wake-ups, stop requests and attempts whose lease was lost.

``Bookkeeping`` is the base of ``tandem.worker.supervisor.Supervisor``, which sets these attributes
up; the pools' threads and the heartbeat's call in here (``_deliver``, ``notify``,
``_stop_lost``, ``_current_attempts``), the supervisor's thread does the rest.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence

from tandem.backends.base import TandemBackend
from tandem.brokers.base import StoredTask
from tandem.execution import Outcome
from tandem.worker.heartbeat import LostAttempt
from tandem.worker.pool_state import PoolState
from tandem.worker.pools import startup

logger = logging.getLogger("tandem.worker")

#: The exit status of a worker whose pool broke (too many stuck interpreters): restart it.
EXIT_POOL_BROKEN = 75
#: Under a stream of endings, how long after the previous round the next one waits for more
#: endings to settle with (seconds; see ``_gather_endings``).
SETTLE_LINGER = 0.005
#: Endings that make a round start at once, however recent the previous one.
SETTLE_BATCH = 64


class Bookkeeping:
    """Pools, in-flight attempts, outcomes, wake-ups and stop requests (set up by
    ``Supervisor.__init__``)."""

    backend: TandemBackend
    worker_id: str
    pools: list[PoolState]
    _by_queue: dict[str, PoolState]
    _executors_chosen: bool
    _outcomes: collections.deque[Outcome]
    _wake: threading.Event
    _urgent: threading.Event  # new work, a stop, a lost lease or many endings: no lingering
    _round_ended: float  # monotonic end of the previous round
    _stopping: int
    _stop_requests: int  # how many request_stop() calls so far
    # In-flight attempts change on the supervisor's thread and are read by the heartbeat's.
    _flight_lock: threading.Lock
    # The round's claims, until they are in flight (``Supervisor._round``): claimed rows count
    # as in flight before they are handed over. Only rebound, never changed in place.
    _handing: list[tuple[PoolState, list[StoredTask]]]
    _lost: collections.deque[LostAttempt]
    # Attempts the heartbeat stopped whose rows may still be RUNNING under their lapsed lease
    # (task id, attempt token): a burst is not over until recovery has given them back.
    _unrecovered: list[tuple[str, str]]
    lost_attempts: int
    exit_code: int
    exit_reason: str | None

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(q for s in self.pools for q in s.config.queues)

    @property
    def in_flight(self) -> int:
        """Attempts in flight: in the pools' books, and those the current round claimed and has
        not handed over yet (each counted once). Lock-free: a signal handler reads it, perhaps
        while the interrupted supervisor thread holds ``_flight_lock``."""
        handing = sum(
            1 for state, tasks in self._handing for t in tasks if t.id not in state.in_flight
        )
        return sum(len(s.in_flight) for s in self.pools) + handing

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
        self._urgent.set()

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
            self._unrecovered.append((lost.task_id, lost.attempt_token))

    def _deliver(self, outcome: Outcome) -> None:  # called from pool threads
        self._outcomes.append(outcome)
        self._wake.set()
        if len(self._outcomes) >= SETTLE_BATCH:
            self._urgent.set()

    def _gather_endings(self) -> None:
        """Let endings that come in a stream be settled together, not one round each.

        With workers that run in parallel with the supervisor (subinterpreters, processes),
        every ending wakes it at once: a round per ending costs one store transaction per task
        (1.7 endings a round, 0.5 ms of the supervisor's CPU per no-op task, measured on
        SQLite with 2 workers). So while the pools' workers have claimed-ahead tasks to go on
        with (none of them waits for this round), a round starts no sooner than
        ``SETTLE_LINGER`` after the previous one; new work, a stop request, a lost lease or
        ``SETTLE_BATCH`` endings start it at once. A single task's ending is never held back:
        a worker that has nothing claimed ahead is idle, and then the round goes at once.
        """
        if self._stopping or not self._outcomes:
            return
        left = self._round_ended + SETTLE_LINGER - time.monotonic()
        if left <= 0:
            return
        running = sum(len(s.in_flight) for s in self.pools) - len(self._outcomes)
        if running <= sum(s.pool.ready_workers() for s in self.pools):
            return  # a worker is (or is about to be) idle: its next task is this round's claim
        self._urgent.wait(left)
        self._urgent.clear()

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
        self._urgent.set()

    def _on_enqueue(self, queue: str) -> None:
        """An enqueue in this process (``tandem.wakeup``): ``notify`` for one queue, and no
        wake-up at all when no pool of this supervisor serves it (a round would find nothing
        new)."""
        state = self._by_queue.get(queue)
        if state is not None:
            state.woken, state.dirty = time.monotonic(), True
            self._wake.set()
            self._urgent.set()

    def request_stop(self, force: bool = False) -> None:
        """First call: drain. Second call (or ``force``): release in-flight tasks and stop."""
        self._stopping = 2 if force or self._stopping else 1
        self._stop_requests += 1
        self._wake.set()
        self._urgent.set()

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
        from tandem.worker.pools import warmup

        warmup.discard()  # an interpreter started ahead that no pool took

    def _take_outcomes(self) -> list[tuple[PoolState, StoredTask, Outcome]]:
        batch: list[tuple[PoolState, StoredTask, Outcome]] = []
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


__all__ = ["EXIT_POOL_BROKEN", "Bookkeeping"]

"""The broker contract: how task state is stored, claimed, leased and settled.

A broker only stores and moves task state. It never runs task code, never sends signals and never
decides policy (retries, back-off): the supervisor does, and hands the broker plain values.

State machine (only Django's four statuses are ever stored):

    READY --claim--> RUNNING --settle--> SUCCESSFUL | FAILED | READY (retry)
    RUNNING --release (shutdown) / recover (lease expired)--> READY | FAILED

Every transition out of RUNNING is conditional on the lease: a worker that lost its lease (it was
recovered and maybe re-claimed elsewhere) cannot overwrite the newer attempt. Each claim gives the
attempt a fresh ``attempt_token``; every later write of that attempt (renew, settle, progress)
names it, so a stale attempt's write is rejected even when the same worker claimed the task again.

Leases are measured on the store's clock where the store is shared between hosts (PostgreSQL and
MariaDB server time, Redis ``TIME``): the caller's ``lease_until - now`` is only the lease's
*length*. A broker with ``store_clock = False`` (SQLite, the memory twin, a test's injected clock)
uses the caller's ``now`` and ``lease_until`` as given.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tandem.brokers.records import (
    FAILED,
    READY,
    RUNNING,
    SUCCESSFUL,
    ErrorRecord,
    NewTask,
    QueueStats,
    Recovered,
    Settlement,
    StoredTask,
    Unreadable,
    WorkerInfo,
    load_json,
)

if TYPE_CHECKING:
    from tandem.brokers.listeners import Listener
    from tandem.brokers.workflow import Dependency, GroupSpec, GroupState


class Broker(abc.ABC):
    """The storage contract every store implements (database, Redis, memory)."""

    backend_alias: str
    #: Whether leases are measured on the store's own clock (see the module docstring).
    store_clock: bool = False
    #: Whether the tasks are rows of ``tandem.models.TaskRecord`` (pages in the Django admin).
    rows_in_admin: bool = False

    @abc.abstractmethod
    def push(self, tasks: Sequence[NewTask]) -> list[str]:
        """Store tasks as READY before returning (in the caller's transaction where one exists).

        Returns the id each task is known by, in order: its own, or, for a task whose
        ``unique_key`` an active (READY or RUNNING) task already holds, that task's id (nothing
        is stored for it). Settling a task as SUCCESSFUL or FAILED frees its key.
        """

    @abc.abstractmethod
    def get(self, task_id: str) -> StoredTask | None:
        """The stored task, or None for an unknown or malformed id."""

    @abc.abstractmethod
    def has_ready(self, queues: Sequence[str], now: datetime) -> bool:
        """A cheap read: is any task claimable now on these queues?"""

    @abc.abstractmethod
    def claim(
        self,
        queues: Sequence[str],
        limit: int,
        worker_id: str,
        lease_until: datetime,
        now: datetime,
        *,
        rate_limit: str | None = None,
    ) -> list[StoredTask]:
        """Atomically move up to ``limit`` claimable tasks to RUNNING under ``worker_id``.

        Claimable: READY, on one of ``queues``, ``available_at <= now``; taken by priority
        (highest first), then ``available_at``, then ``enqueued_at``. A task with a
        ``concurrency_key`` is taken only while fewer than its ``concurrency_limit`` tasks of
        that key (and backend) are RUNNING — the attempt holds one of the key's slots until its
        settle, release or recovery; one that would have to wait is skipped (stays READY, no
        attempt counted) or, with ``on_limit="discard"``, ends FAILED with a
        ``ConcurrencyLimited`` error without running (never returned). A task with a
        ``rate_limit`` is taken only while fewer than N starts of its task path (and backend)
        fall in the window ending now (store clock); ``rate_limit`` here is the pool's: at most
        N starts of any task of ``queues`` per window. A task over a rate is skipped (stays
        READY, no attempt counted), never blocking the tasks behind it. Each claim appends
        ``worker_id`` to ``worker_ids``, sets ``last_attempted_at = now`` and ``started_at`` on the
        first attempt, and a fresh ``attempt_token``. The lease lasts ``lease_until - now`` (on
        the store's clock when ``store_clock``). Returned in claim order.
        """

    @abc.abstractmethod
    def claim_starved(
        self,
        queues: Sequence[str],
        limit: int,
        worker_id: str,
        lease_until: datetime,
        now: datetime,
        starved_before: datetime,
        *,
        rate_limit: str | None = None,
    ) -> list[StoredTask]:
        """``claim``, of starved tasks only: READY, on one of ``queues`` (none paused), with
        ``available_at <= starved_before`` — taken oldest first (``available_at``, then
        ``enqueued_at``) whatever their priority. The supervisor calls it before ``claim``, so
        a pool's ``starvation_limit`` puts a task that waited too long ahead of younger ones."""

    @abc.abstractmethod
    def renew(
        self, worker_id: str, attempts: Mapping[str, str], lease_until: datetime, now: datetime
    ) -> set[str]:
        """Extend the leases of ``attempts`` (task id -> attempt token) that ``worker_id`` still
        holds in that very attempt, by ``lease_until - now``; return the ids still held."""

    @abc.abstractmethod
    def settle(self, settlements: Sequence[Settlement]) -> int:
        """Write attempt endings in one batch; those whose attempt is no longer the current,
        RUNNING one (lease lost, recovered, re-claimed) are ignored. Returns how many were
        written."""

    @abc.abstractmethod
    def release(self, worker_id: str, attempts: Mapping[str, str], now: datetime) -> int:
        """Put ``attempts`` (task id -> attempt token) that ``worker_id`` still holds in that very
        attempt back to READY (shutdown), recording a Released error; a stale attempt's release
        (lease lost, task recovered or re-claimed) is ignored. Returns how many were released."""

    @abc.abstractmethod
    def recover_expired(self, now: datetime, recovery_max_attempts: int) -> list[Recovered]:
        """Expired leases: back to READY with an error, or FAILED when attempts are spent.

        A task may have ``max(max_attempts, recovery_max_attempts)`` attempts in all.
        """

    @abc.abstractmethod
    def cancel(self, task_id: str, now: datetime) -> str | None:
        """Cancel a task: a READY one ends FAILED at once with a ``Cancelled`` error
        (``"cancelled"``); a RUNNING one is marked (``"requested"``) and its code sees it
        cooperatively. None when the task is unknown or already finished.
        """

    @abc.abstractmethod
    def cancel_requested(self, task_ids: Sequence[str]) -> set[str]:
        """Which of ``task_ids`` are RUNNING with a cancellation request."""

    @abc.abstractmethod
    def save_progress(
        self, task_id: str, worker_id: str, data: Any, now: datetime, *, attempt_token: str
    ) -> bool:
        """Store a running attempt's progress (JSON); False when that attempt lost its lease."""

    @abc.abstractmethod
    def prune(self, finished_before: datetime, statuses: Sequence[str]) -> int:
        """Delete this backend's tasks in ``statuses`` (SUCCESSFUL and/or FAILED) that finished
        before ``finished_before``; return how many were deleted."""

    @abc.abstractmethod
    def count_finished(self, finished_before: datetime, statuses: Sequence[str]) -> int:
        """How many tasks ``prune(finished_before, statuses)`` would delete now (for
        ``tandem prune --dry-run`` and its progress line)."""

    @abc.abstractmethod
    def fire_tick(self, name: str, tick_at: datetime, task: NewTask) -> str | None:
        """Record tick ``tick_at`` of schedule ``name`` and push ``task``, atomically.

        Returns the pushed task's id (or the active task's, for a unique task), or None when the
        tick was already recorded (by any supervisor): each tick enqueues exactly once.
        """

    @abc.abstractmethod
    def prune_ticks(self, name: str, recorded_before: datetime) -> int:
        """Delete schedule ``name``'s ticks before ``recorded_before``, always keeping its newest
        tick (where catch-up starts); return how many were deleted."""

    @abc.abstractmethod
    def last_tick(self, name: str) -> datetime | None:
        """The newest recorded tick of schedule ``name`` for this backend, if any."""

    @abc.abstractmethod
    def stats(self) -> list[QueueStats]:
        """Counts per queue for this backend (a task waiting for its parents is not counted
        until it is claimable)."""

    @abc.abstractmethod
    def find(
        self,
        statuses: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        queue: str | None = None,
        task_path: str | None = None,
        finished_since: datetime | None = None,
        enqueued_since: datetime | None = None,
    ) -> list[str]:
        """Ids of this backend's tasks in ``statuses``, oldest enqueued first, narrowed by
        ``ids`` (malformed ones match nothing), ``queue``, ``task_path``, ``finished_at >=
        finished_since`` and ``enqueued_at >= enqueued_since`` (for ``tandem retry|cancel``)."""

    @abc.abstractmethod
    def retry_failed(self, max_attempts: Mapping[str, int], now: datetime) -> list[str]:
        """Put FAILED tasks (id -> their new ``max_attempts``: attempts so far plus a fresh
        budget) back to READY, available at ``now``. Their errors, ``worker_ids`` and progress
        are kept; ``finished_at``, the lease and a cancellation request are cleared; a unique
        key is not taken again. Returns the ids moved (those still FAILED, of this backend)."""

    @abc.abstractmethod
    def pause_queues(self, queues: Sequence[str], now: datetime) -> list[str]:
        """Pause ``queues`` of this backend: claims (and ``has_ready``) skip them until they are
        resumed; their tasks stay READY and running ones finish. Stored, so a pause outlives
        every worker. Returns the queues that were not paused already, in the order given."""

    @abc.abstractmethod
    def resume_queues(self, queues: Sequence[str]) -> list[str]:
        """Resume paused ``queues`` and wake the supervisors that serve them. Returns the queues
        that were paused, in the order given."""

    @abc.abstractmethod
    def paused_queues(self) -> dict[str, datetime]:
        """This backend's paused queues, each with when it was paused, sorted by name."""

    @abc.abstractmethod
    def running(self, limit: int) -> list[StoredTask]:
        """This backend's RUNNING tasks, earliest started first (at most ``limit``): what the
        dashboard and ``tandem status`` check for a lost worker or a cancel request."""

    @abc.abstractmethod
    def register_worker(self, worker: WorkerInfo) -> None:
        """Add (or replace) a live worker in the registry."""

    @abc.abstractmethod
    def heartbeat_worker(
        self,
        worker_id: str,
        now: datetime,
        tasks_done: int,
        pools: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Record that ``worker_id`` is alive (and, when given, its pools' current state)."""

    @abc.abstractmethod
    def unregister_worker(self, worker_id: str) -> None:
        """Remove a worker that stopped cleanly."""

    @abc.abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Registered workers of this backend, newest heartbeat first."""

    @abc.abstractmethod
    def forget_workers(self, silent_since: datetime) -> int:
        """Remove workers whose last heartbeat is older than ``silent_since``."""

    # -- what differs between stores, asked of the broker (never by its type) --------------------

    def describe(self) -> str:
        """What the store is, for a start-up banner: ``"postgresql (shop)"``."""
        return type(self).__name__

    def listener(self, on_wake: Callable[[list[str]], None]) -> Listener | None:
        """A cross-process wake-up source for a supervisor (not started), or None when the
        store has none and the supervisor polls. ``on_wake(queues)``: [] means any queue."""
        return None

    def notify(self, queues: Sequence[str]) -> None:  # noqa: B027 — optional hook
        """Wake other processes' supervisors for ``queues`` after the caller's write (stores
        whose writes wake listeners by themselves do nothing)."""

    def setup_warnings(self) -> list[tuple[str, str]]:
        """(message, hint) for each way this store's configuration will hurt the site or the
        workers (system check tandem.W003 and the start-up banner show them); none by default."""
        return []

    def ping(self) -> None:
        """Raise when the store does not answer (readiness checks)."""
        self.stats()

    def due_ready(self, queues: Sequence[str], now: datetime) -> int:
        """READY tasks of ``queues`` due at ``now`` (a store that cannot count due ones alone
        answers every READY task)."""
        return sum(s.ready for s in self.stats() if s.queue_name in queues)

    def rate_limited(self, now: datetime) -> dict[str, datetime]:
        """The rate limits whose window is full at ``now`` (their tasks wait READY): limit key
        (``task:<path>`` or ``pool:<queues>``) -> when its next start fits. For the status page
        and metrics; a store that keeps no such log answers {}."""
        return {}

    def throughput(self, since: datetime) -> dict[tuple[datetime, str], int] | None:
        """Tasks that ended SUCCESSFUL or FAILED since ``since``, counted per (minute, status);
        None when the store keeps no finish times it can count by."""
        return None

    def recent_failures(self, limit: int) -> list[StoredTask] | None:
        """The last ``limit`` FAILED tasks, newest first; None when the store cannot list them."""
        return None

    # -- workflows (tandem.brokers.workflow) ----------------------------------------------------

    def push_workflow(
        self,
        tasks: Sequence[NewTask],
        dependencies: Sequence[Dependency] = (),
        group: GroupSpec | None = None,
    ) -> list[str]:
        """Store ``tasks`` at once (one transaction on the database): those named by a
        dependency wait for their parents (READY, not claimable); ``group`` records a group.
        Parents already finished count at once. Unique tasks are refused."""
        raise NotImplementedError(f"{type(self).__name__} does not store workflows")

    def parent_ids(self, task_id: str) -> list[str]:
        """The ids of the tasks ``task_id`` waited (or waits) for, in the order given."""
        return []

    def child_ids(self, task_id: str) -> list[str]:
        """The ids of the tasks that wait (or waited) for ``task_id``."""
        return []

    def get_group(self, group_id: str) -> GroupState | None:
        """A stored group of this backend, or None."""
        return None

    def recent_groups(self, limit: int) -> list[GroupState]:
        """This backend's newest groups, newest first."""
        return []

    def finished_count(self, task_ids: Sequence[str]) -> int:
        """How many of ``task_ids`` are SUCCESSFUL or FAILED (a group's progress)."""
        done = 0
        for task_id in task_ids:
            task = self.get(task_id)
            done += task is not None and task.status in (SUCCESSFUL, FAILED)
        return done

    def transaction(self) -> AbstractContextManager[None]:
        """One atomic unit around several calls (the supervisor's settle + claim round)."""
        return nullcontext()

    def lost_to_deadlock(self, exc: BaseException) -> bool:
        """``exc`` (raised inside ``transaction()``) says the store rolled the whole transaction
        back as a deadlock's victim: nothing of it was written, and running it again at once is
        safe. Default: no store error is one."""
        return False

    def prepare(self) -> None:  # noqa: B027 — optional hook
        """Called once by a supervisor before its first claim (e.g. switch SQLite to WAL)."""

    def connection_cutter(self) -> Callable[[], bool]:
        """For the calling thread's store connection: a function that any thread may call to cut
        it, so that a call blocked on a silent network fails at once with a store error (and the
        next call reconnects). The function returns whether there was a connection to cut.
        Default: nothing to cut (the memory twin; Redis, whose client has a socket timeout)."""
        return _nothing_to_cut

    def startup_problem(self) -> str | None:
        """Why a supervisor cannot start on this store (e.g. its tables are not migrated), or
        None. Raises when the store does not answer."""
        return None


def _nothing_to_cut() -> bool:
    return False


def new_attempt_token() -> str:
    """A fresh, unguessable attempt token (one per claim call: with the task id it names one
    attempt)."""
    return uuid.uuid4().hex


def allowed_attempts(max_attempts: int, recovery_max_attempts: int) -> int:
    """How many attempts a task whose attempts are lost to crashes may have in all."""
    return max(max_attempts, recovery_max_attempts)


def lost_lease_error(
    worker_id: str, lease_expires_at: datetime | None, now: datetime
) -> ErrorRecord:
    """The error recorded for an attempt whose worker disappeared."""
    return ErrorRecord(
        exception_class_path="tandem.exceptions.WorkerLost",
        traceback=(
            f"tandem.exceptions.WorkerLost: worker {worker_id!r} stopped renewing its lease "
            f"(expired at {lease_expires_at.isoformat() if lease_expires_at else 'unknown'}, "
            f"recovered at {now.isoformat()}); the attempt's outcome is unknown.\n"
        ),
    )


def cancelled_error(now: datetime, *, running: bool) -> ErrorRecord:
    """The error recorded for a cancelled task."""
    where = "while it ran" if running else "before it ran"
    return ErrorRecord(
        exception_class_path="tandem.exceptions.Cancelled",
        traceback=f"tandem.exceptions.Cancelled: the task was cancelled {where} "
        f"(at {now.isoformat()}).\n",
    )


def concurrency_limited_error(task: StoredTask, now: datetime) -> ErrorRecord:
    """The error recorded for a ``on_limit="discard"`` task whose key was full when it was due."""
    return ErrorRecord(
        exception_class_path="tandem.exceptions.ConcurrencyLimited",
        traceback=(
            f"tandem.exceptions.ConcurrencyLimited: task {task.id} did not run: concurrency key "
            f'"{task.concurrency_key}" already had {task.concurrency_limit} running task(s) at '
            f'{now.isoformat()}, and it was enqueued with on_limit="discard".\n'
        ),
    )


def released_error(worker_id: str, now: datetime) -> ErrorRecord:
    """The error recorded for an attempt a shutting-down worker gave back."""
    return ErrorRecord(
        exception_class_path="tandem.exceptions.Released",
        traceback=(
            f"tandem.exceptions.Released: worker {worker_id!r} shut down at {now.isoformat()} "
            "before the attempt finished; the task was put back to READY.\n"
        ),
    )


__all__ = [
    "FAILED",
    "READY",
    "RUNNING",
    "SUCCESSFUL",
    "Broker",
    "ErrorRecord",
    "NewTask",
    "QueueStats",
    "Recovered",
    "Settlement",
    "StoredTask",
    "Unreadable",
    "WorkerInfo",
    "allowed_attempts",
    "cancelled_error",
    "concurrency_limited_error",
    "load_json",
    "lost_lease_error",
    "new_attempt_token",
    "released_error",
]

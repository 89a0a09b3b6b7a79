"""The in-memory twin of the stores: the same contract, for unit tests and experiments.

Thread-safe within one process; holds nothing across processes or restarts.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from tandem.brokers import memory_concurrency, memory_rates
from tandem.brokers.base import (
    FAILED,
    READY,
    RUNNING,
    SUCCESSFUL,
    Broker,
    NewTask,
    QueueStats,
    Recovered,
    Settlement,
    StoredTask,
    WorkerInfo,
    allowed_attempts,
    cancelled_error,
    lost_lease_error,
    new_attempt_token,
    released_error,
)
from tandem.brokers.memory_registry import MemoryRegistry
from tandem.brokers.memory_workflow import MemoryWorkflows


class MemoryBroker(MemoryRegistry, MemoryWorkflows, Broker):
    def __init__(self, backend_alias: str = "default") -> None:
        self.backend_alias = backend_alias
        self._tasks: dict[str, StoredTask] = {}
        self._lock = threading.Lock()
        self._workers: dict[str, WorkerInfo] = {}
        self._ticks: dict[tuple[str, str], set[datetime]] = {}
        self._paused: dict[str, datetime] = {}
        self._rates = memory_rates.RateBook()

    @staticmethod
    def _key(task_id: str) -> str | None:
        try:
            return str(uuid.UUID(str(task_id)))
        except ValueError:
            return None

    def _active_with_key(self, backend: str, unique_key: str) -> StoredTask | None:
        for task in self._tasks.values():
            if task.unique_key == unique_key and task.backend == backend:
                return task  # only READY and RUNNING tasks keep their key
        return None

    def push(self, tasks: Sequence[NewTask]) -> list[str]:
        with self._lock:
            return [self._push_one(new) for new in tasks]

    def _push_one(self, new: NewTask) -> str:
        if new.unique_key is not None:
            active = self._active_with_key(new.backend, new.unique_key)
            if active is not None:
                return active.id
        self._tasks[new.id] = StoredTask(
            id=new.id,
            backend=new.backend,
            queue_name=new.queue_name,
            task_path=new.task_path,
            priority=new.priority,
            takes_context=new.takes_context,
            status=READY,
            args=list(new.args),
            kwargs=dict(new.kwargs),
            run_after=new.run_after,
            available_at=new.available_at,
            enqueued_at=new.enqueued_at,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            return_value=None,
            errors=(),
            worker_ids=(),
            max_attempts=new.max_attempts,
            worker_id="",
            lease_expires_at=None,
            timeout=new.timeout,
            unique_key=new.unique_key,
            trace_context=new.trace_context,
            concurrency_key=new.concurrency_key,
            concurrency_limit=new.concurrency_limit,
            on_limit=new.on_limit,
            rate_limit=new.rate_limit,
        )
        return new.id

    def get(self, task_id: str) -> StoredTask | None:
        key = self._key(task_id)
        with self._lock:
            return self._tasks.get(key) if key else None

    def running(self, limit: int) -> list[StoredTask]:
        with self._lock:
            tasks = [
                t
                for t in self._tasks.values()
                if t.status == RUNNING and t.backend == self.backend_alias
            ]
        tasks.sort(key=lambda t: (t.started_at or t.enqueued_at, t.id))
        return tasks[:limit]

    def _claimable(self, queues: Sequence[str], now: datetime) -> list[StoredTask]:
        running = memory_concurrency.running_per_key(self._tasks.values())
        return sorted(
            (
                t
                for t in self._tasks.values()
                if t.status == READY
                and t.backend == self.backend_alias
                and t.queue_name in queues
                and t.queue_name not in self._paused
                and t.available_at <= now
                and not self._is_waiting(t.id)
                and not memory_concurrency.waits(t, running)
            ),
            key=lambda t: (-t.priority, t.available_at, t.enqueued_at),
        )

    def has_ready(self, queues: Sequence[str], now: datetime) -> bool:
        with self._lock:
            return bool(self._claimable(queues, now))

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
        started = self._started(worker_id, lease_until, now)
        with self._lock:
            gate = self._rates.gate(self.backend_alias, queues, rate_limit, now)
            return self._take(self._claimable(queues, now), limit, started, now, gate)

    def _take(self, candidates: list[StoredTask], limit: int, *flow: Any) -> list[StoredTask]:
        """``flow``: the claim's started fields, now and rate gate (``memory_concurrency``)."""
        claimed, discarded = memory_concurrency.take(self._tasks, candidates, limit, *flow)
        now = flow[1]
        if discarded:
            self._parents_finished(discarded, now)  # workflows
        return claimed

    @staticmethod
    def _started(worker_id: str, lease_until: datetime, now: datetime) -> dict[str, object]:
        """What a claim sets on a task (besides ``status``, ``started_at``, ``worker_ids``)."""
        return {
            "worker_id": worker_id,
            "attempt_token": new_attempt_token(),
            "lease_expires_at": lease_until,
            "last_attempted_at": now,
        }

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
        started = self._started(worker_id, lease_until, now)
        bound = min(starved_before, now)
        with self._lock:
            starved = sorted(
                (t for t in self._claimable(queues, now) if t.available_at <= bound),
                key=lambda t: (t.available_at, t.enqueued_at),
            )
            gate = self._rates.gate(self.backend_alias, queues, rate_limit, now)
            return self._take(starved, max(limit, 0), started, now, gate)

    def rate_limited(self, now: datetime) -> dict[str, datetime]:
        with self._lock:
            return self._rates.full(self.backend_alias, now)

    def _held(self, worker_id: str, task_id: str, token: str | None = None) -> StoredTask | None:
        """The RUNNING task ``worker_id`` holds (in attempt ``token``, unless None)."""
        task = self._tasks.get(task_id)
        if task is None or task.status != RUNNING or task.worker_id != worker_id:
            return None
        if token is not None and task.attempt_token != token:
            return None
        return task

    def renew(
        self, worker_id: str, attempts: Mapping[str, str], lease_until: datetime, now: datetime
    ) -> set[str]:
        with self._lock:
            held = set()
            for task_id, token in attempts.items():
                task = self._held(worker_id, task_id, token)
                if task is not None:
                    self._tasks[task_id] = replace(task, lease_expires_at=lease_until)
                    held.add(task_id)
            return held

    def settle(self, settlements: Sequence[Settlement]) -> int:
        with self._lock:
            written = 0
            for s in settlements:
                task = self._held(s.worker_id, s.id, s.attempt_token)
                if task is None:
                    continue
                errors = (*task.errors, s.error) if s.error else task.errors
                if s.status == READY:
                    assert s.retry_at is not None
                    task = replace(task, status=READY, errors=errors, available_at=s.retry_at)
                else:
                    task = replace(
                        task,
                        status=s.status,
                        errors=errors,
                        return_value=s.return_value,
                        finished_at=s.finished_at,
                        unique_key=None,
                    )
                self._tasks[s.id] = replace(
                    task, worker_id="", lease_expires_at=None, cancel_requested_at=None
                )
                written += 1
                if s.status != READY:
                    self._parents_finished([s.id], s.finished_at)
            return written

    def release(self, worker_id: str, attempts: Mapping[str, str], now: datetime) -> int:
        error = released_error(worker_id, now)
        with self._lock:
            released = 0
            for task_id, token in attempts.items():
                task = self._held(worker_id, task_id, token)
                if task is not None:
                    self._tasks[task_id] = replace(
                        task,
                        status=READY,
                        errors=(*task.errors, error),
                        available_at=now,
                        worker_id="",
                        lease_expires_at=None,
                        cancel_requested_at=None,
                    )
                    released += 1
            return released

    def recover_expired(self, now: datetime, recovery_max_attempts: int) -> list[Recovered]:
        with self._lock:
            recovered = []
            for task in list(self._tasks.values()):
                if task.status != RUNNING or task.backend != self.backend_alias:
                    continue
                if task.lease_expires_at is None or task.lease_expires_at >= now:
                    continue
                error = lost_lease_error(task.worker_id, task.lease_expires_at, now)
                spent = task.attempts >= allowed_attempts(task.max_attempts, recovery_max_attempts)
                self._tasks[task.id] = replace(
                    task,
                    status=FAILED if spent else READY,
                    errors=(*task.errors, error),
                    finished_at=now if spent else None,
                    available_at=task.available_at if spent else now,
                    worker_id="",
                    lease_expires_at=None,
                    unique_key=None if spent else task.unique_key,
                    cancel_requested_at=None,
                )
                recovered.append(
                    Recovered(
                        id=task.id, status=FAILED if spent else READY, worker_id=task.worker_id
                    )
                )
                if spent:
                    self._parents_finished([task.id], now)
            return recovered

    def cancel(self, task_id: str, now: datetime) -> str | None:
        key = self._key(task_id)
        with self._lock:
            task = self._tasks.get(key) if key else None
            if task is None or task.backend != self.backend_alias:
                return None
            if task.status == READY:
                self._tasks[task.id] = replace(
                    task,
                    status=FAILED,
                    errors=(*task.errors, cancelled_error(now, running=False)),
                    finished_at=now,
                    unique_key=None,
                )
                self._parents_finished([task.id], now)
                return "cancelled"
            if task.status == RUNNING:
                if task.cancel_requested_at is None:
                    self._tasks[task.id] = replace(task, cancel_requested_at=now)
                return "requested"
            return None

    def cancel_requested(self, task_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {
                task_id
                for task_id in task_ids
                if (task := self._tasks.get(task_id)) is not None
                and task.status == RUNNING
                and task.cancel_requested_at is not None
            }

    def save_progress(
        self, task_id: str, worker_id: str, data: Any, now: datetime, *, attempt_token: str
    ) -> bool:
        with self._lock:
            task = self._held(worker_id, task_id, attempt_token)
            if task is None:
                return False
            self._tasks[task_id] = replace(task, progress=data, progress_at=now)
            return True

    def _finished(self, finished_before: datetime, statuses: Sequence[str]) -> list[str]:
        wanted = set(statuses) & {SUCCESSFUL, FAILED}
        return [
            task.id
            for task in self._tasks.values()
            if task.backend == self.backend_alias
            and task.status in wanted
            and task.finished_at is not None
            and task.finished_at < finished_before
        ]

    def prune(self, finished_before: datetime, statuses: Sequence[str]) -> int:
        with self._lock:
            doomed = self._finished(finished_before, statuses)
            for task_id in doomed:
                del self._tasks[task_id]
            self._forget_workflows(doomed)
            return len(doomed)

    def count_finished(self, finished_before: datetime, statuses: Sequence[str]) -> int:
        with self._lock:
            return len(self._finished(finished_before, statuses))

    def fire_tick(self, name: str, tick_at: datetime, task: NewTask) -> str | None:
        with self._lock:
            ticks = self._ticks.setdefault((self.backend_alias, name), set())
            if tick_at in ticks:
                return None
            ticks.add(tick_at)
            return self._push_one(task)

    def prune_ticks(self, name: str, recorded_before: datetime) -> int:
        with self._lock:
            ticks = self._ticks.get((self.backend_alias, name), set())
            newest = max(ticks, default=None)
            doomed = {t for t in ticks if t < recorded_before and t != newest}
            ticks -= doomed
            return len(doomed)

    def last_tick(self, name: str) -> datetime | None:
        with self._lock:
            return max(self._ticks.get((self.backend_alias, name), ()), default=None)

    def stats(self) -> list[QueueStats]:
        with self._lock:
            by_queue: dict[str, dict[str, int]] = {}
            oldest: dict[str, datetime] = {}
            for task in self._tasks.values():
                if task.backend != self.backend_alias:
                    continue
                if task.status == READY and self._is_waiting(task.id):
                    continue  # not claimable yet: counted once its parents let it go
                counts = by_queue.setdefault(task.queue_name, {})
                counts[task.status] = counts.get(task.status, 0) + 1
                if task.status == READY and (
                    task.queue_name not in oldest or task.available_at < oldest[task.queue_name]
                ):
                    oldest[task.queue_name] = task.available_at
            return [
                QueueStats(
                    queue_name=queue,
                    ready=counts.get(READY, 0),
                    running=counts.get(RUNNING, 0),
                    failed=counts.get(FAILED, 0),
                    successful=counts.get(SUCCESSFUL, 0),
                    oldest_ready_at=oldest.get(queue),
                )
                for queue, counts in sorted(by_queue.items())
            ]

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
        wanted = None if ids is None else {k for k in map(self._key, ids) if k is not None}
        with self._lock:
            found = [
                t
                for t in self._tasks.values()
                if t.backend == self.backend_alias
                and t.status in statuses
                and (wanted is None or t.id in wanted)
                and (queue is None or t.queue_name == queue)
                and (task_path is None or t.task_path == task_path)
                and (
                    finished_since is None
                    or (t.finished_at is not None and t.finished_at >= finished_since)
                )
                and (enqueued_since is None or t.enqueued_at >= enqueued_since)
            ]
        return [t.id for t in sorted(found, key=lambda t: (t.enqueued_at, t.id))]

    def retry_failed(self, max_attempts: Mapping[str, int], now: datetime) -> list[str]:
        moved = []
        with self._lock:
            for task_id, attempts in max_attempts.items():
                key = self._key(task_id)
                task = self._tasks.get(key) if key else None
                if task is None or task.status != FAILED or task.backend != self.backend_alias:
                    continue
                self._tasks[task.id] = replace(
                    task,
                    status=READY,
                    max_attempts=attempts,
                    available_at=now,
                    finished_at=None,
                    worker_id="",
                    lease_expires_at=None,
                    cancel_requested_at=None,
                )
                moved.append(task_id)
        return moved

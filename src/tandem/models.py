"""Durable state: one row per task result, one per live worker.

Only the broker (``tandem.brokers.database``) writes these rows; everything else reads them.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.tasks import TaskResultStatus


class TaskRecord(models.Model):
    """One enqueued task and its result, with the lease of the worker currently running it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    backend = models.CharField(max_length=100, default="default")
    queue_name = models.CharField(max_length=100, default="default")
    task_path = models.CharField(max_length=255)
    priority = models.SmallIntegerField(default=0)
    takes_context = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=TaskResultStatus.choices, default=TaskResultStatus.READY
    )
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    # run_after as the user asked for it (None: as soon as possible); available_at is when the
    # task may next be claimed (enqueue time, run_after, or a retry's back-off).
    run_after = models.DateTimeField(null=True, blank=True)
    available_at = models.DateTimeField()
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    return_value = models.JSONField(null=True, blank=True)
    # One {"exception_class_path", "traceback"} per failed attempt, oldest first.
    errors = models.JSONField(default=list)
    # One worker id per attempt: attempts == len(worker_ids), as Django defines it.
    worker_ids = models.JSONField(default=list)
    max_attempts = models.PositiveSmallIntegerField(default=1)
    # The lease: who runs it now and until when the claim holds without a heartbeat.
    worker_id = models.CharField(max_length=64, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # A fresh token per claim: every later write of that attempt must name it (fencing).
    attempt_token = models.CharField(max_length=32, blank=True, default="", db_default="")
    # Per-task extras stored with the row (the rest are read from the task itself).
    timeout = models.FloatField(null=True, blank=True)
    # A unique task's key while it is READY or RUNNING, NULL otherwise: at most one active task
    # per key and backend (NULLs never collide, on every supported database).
    unique_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # The last ``context.save_progress()`` data: progress to show, the checkpoint to resume from.
    progress = models.JSONField(null=True, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)
    # Set by ``tandem.cancel()`` on a RUNNING task; the task sees ``context.cancelled``.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # The W3C trace context of the enqueue (OpenTelemetry), parent of every attempt's span.
    trace_context = models.JSONField(null=True, blank=True)
    # Flow control: at most ``concurrency_limit`` RUNNING tasks per key and backend, each holding
    # a ``ConcurrencySlot`` row for its attempt; ``on_limit``: "wait" or "discard".
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    concurrency_limit = models.PositiveIntegerField(default=1, db_default=1)
    on_limit = models.CharField(max_length=8, default="wait", db_default="wait")
    # Flow control: "N/s", "N/m" or "N/h" — at most N starts of this task path per window
    # (a ``RateWindow`` row per path keeps the log).
    rate_limit = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001

    class Meta:
        verbose_name = "task"
        indexes = [
            # The claim: status='READY' AND backend=… AND queue_name IN (…) AND available_at <= now
            # ORDER BY priority DESC, available_at, enqueued_at — an index range scan on SQLite
            # and PostgreSQL that, for one queue, yields rows in claim order and stops at LIMIT
            # (without enqueued_at, rows sharing an available_at — a bulk enqueue — were sorted
            # in full on every claim).
            models.Index(
                fields=[
                    "status",
                    "backend",
                    "queue_name",
                    "-priority",
                    "available_at",
                    "enqueued_at",
                ],
                name="tandem_claim_idx",
            ),
            # Recovery of expired leases: status='RUNNING' AND lease_expires_at < now.
            models.Index(fields=["status", "lease_expires_at"], name="tandem_lease_idx"),
            models.Index(fields=["enqueued_at"], name="tandem_enqueued_idx"),
            # Pruning and the dashboard: finished tasks by age.
            models.Index(fields=["status", "finished_at"], name="tandem_finished_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["backend", "unique_key"], name="tandem_unique_active"),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} [{self.status}] {self.id}"

    @property
    def attempts(self) -> int:
        return len(self.worker_ids)


class ScheduleTick(models.Model):
    """One firing of a cron schedule: the unique row makes it enqueue once across supervisors."""

    backend = models.CharField(max_length=100, default="default")
    name = models.CharField(max_length=100)
    tick_at = models.DateTimeField()
    task_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "schedule tick"
        constraints = [
            models.UniqueConstraint(
                fields=["backend", "name", "tick_at"], name="tandem_unique_tick"
            ),
        ]
        indexes = [models.Index(fields=["backend", "name", "-tick_at"], name="tandem_tick_idx")]

    def __str__(self) -> str:
        return f"{self.name} @ {self.tick_at.isoformat()}"


class WorkerRecord(models.Model):
    """A live supervisor (``tandem worker`` / ``tandem serve``), kept alive by heartbeats."""

    id = models.CharField(max_length=64, primary_key=True)
    backend = models.CharField(max_length=100, default="default")
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    pools = models.JSONField(default=dict)
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()
    tasks_done = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "worker"

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid} ({self.id})"


class TaskDependency(models.Model):
    """One edge of a workflow: ``child`` waits for ``parent`` (``tandem.enqueue_after``).

    ``resolved`` turns true in the very write that finishes the parent (settle, cancel, or a
    recovery that gives up); the index on ``(parent_id, resolved)`` is how that write finds the
    waiting children without scanning every waiting task.
    """

    child_id = models.UUIDField()
    parent_id = models.UUIDField()
    position = models.PositiveIntegerField(default=0)
    resolved = models.BooleanField(default=False)

    class Meta:
        verbose_name = "task dependency"
        indexes = [
            models.Index(fields=["parent_id", "resolved"], name="tandem_dep_parent_idx"),
            models.Index(fields=["child_id", "position"], name="tandem_dep_child_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.child_id} after {self.parent_id}"


class TaskWait(models.Model):
    """A READY task that may not be claimed yet: how many parents it still waits for.

    While this row exists the task's ``available_at`` is ``WAITING_UNTIL`` (far in the future),
    so the claim index skips it; the write that resolves its last parent deletes this row and
    makes the task available (or ends it FAILED with ``DependencyFailed``).
    """

    task_id = models.UUIDField(primary_key=True)
    remaining = models.PositiveIntegerField()
    failed = models.PositiveIntegerField(default=0)
    on_parent_failure = models.CharField(max_length=8, default="fail")
    # Chain steps: the (single) parent's return value becomes the first positional argument.
    pass_result = models.BooleanField(default=False)

    class Meta:
        verbose_name = "waiting task"

    def __str__(self) -> str:
        return f"{self.task_id} waits for {self.remaining}"


class TaskGroup(models.Model):
    """A group of tasks (``tandem.group``); its members are ``TaskGroupMember`` rows."""

    id = models.UUIDField(primary_key=True)
    backend = models.CharField(max_length=100, default="default")
    created_at = models.DateTimeField()
    total = models.PositiveIntegerField()
    # The ``then`` task, waiting for every member (None: the group has no callback).
    then_id = models.UUIDField(null=True, blank=True)

    class Meta:
        verbose_name = "task group"
        indexes = [models.Index(fields=["backend", "-created_at"], name="tandem_group_idx")]

    def __str__(self) -> str:
        return f"group {self.id} ({self.total} tasks)"


class TaskGroupMember(models.Model):
    group_id = models.UUIDField()
    task_id = models.UUIDField()
    position = models.PositiveIntegerField()

    class Meta:
        verbose_name = "task group member"
        indexes = [
            models.Index(fields=["group_id", "position"], name="tandem_member_idx"),
            models.Index(fields=["task_id"], name="tandem_member_task_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} in {self.group_id}"


class QueuePause(models.Model):
    """A paused queue of one backend: claims skip it until it is resumed (the row is deleted)."""

    backend = models.CharField(max_length=100, default="default")
    queue_name = models.CharField(max_length=100)
    paused_at = models.DateTimeField()

    class Meta:
        verbose_name = "paused queue"
        constraints = [
            models.UniqueConstraint(
                fields=["backend", "queue_name"], name="tandem_unique_queue_pause"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.backend}:{self.queue_name} (paused)"


class ConcurrencySlot(models.Model):
    """One of a concurrency key's slots, held by one attempt of a RUNNING task.

    Taken in the claim's transaction (the unique constraint makes two claimers that race for
    one slot number take it once: the later insert does nothing, and its task waits), deleted
    by that attempt's settle, release or recovery — never by another attempt of the task, whose
    ``attempt_token`` differs. No lock lives while the task runs: a killed worker's slot is
    freed when its lease is recovered.
    """

    backend = models.CharField(max_length=100, default="default")
    concurrency_key = models.CharField(max_length=255)
    slot = models.PositiveIntegerField()
    task_id = models.UUIDField()
    attempt_token = models.CharField(max_length=32)
    taken_at = models.DateTimeField()

    class Meta:
        verbose_name = "concurrency slot"
        constraints = [
            models.UniqueConstraint(
                fields=["backend", "concurrency_key", "slot"], name="tandem_unique_slot"
            ),
        ]
        indexes = [models.Index(fields=["task_id"], name="tandem_slot_task_idx")]

    def __str__(self) -> str:
        return f"{self.backend}:{self.concurrency_key}#{self.slot} ({self.task_id})"


class RateWindow(models.Model):
    """The start log of one rate limit: a task path's own ``rate_limit``, or a pool's
    (``limit_key`` ``pool:<queues>``).

    Locked and rewritten by the claim's transaction (``brokers/database_rates.py``): ``starts``
    holds the start times (epoch seconds, store clock) still inside the window; ``free_at`` is
    when the next start fits while the window is full (NULL otherwise).
    """

    backend = models.CharField(max_length=100, default="default")
    limit_key = models.CharField(max_length=255)
    rate = models.CharField(max_length=32)
    starts = models.TextField(default="[]")
    free_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "rate window"
        constraints = [
            models.UniqueConstraint(fields=["backend", "limit_key"], name="tandem_unique_rate"),
        ]

    def __str__(self) -> str:
        return f"{self.backend}:{self.limit_key} ({self.rate})"

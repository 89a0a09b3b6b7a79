"""RUNNING tasks that are not simply running: their worker is gone, or a cancel was requested.

A task whose worker stopped heartbeating stays RUNNING until its lease ends; then the next
heartbeat of any live supervisor recovers it (back to READY, or FAILED when its attempts are
spent). So the note says when: "worker lost — recovered within N s". A RUNNING task with a cancel
request runs on until its code checks ``context.cancelled`` (or a process pool kills it): its
note is "cancel requested".

Like ``history``, only a database store can list RUNNING rows with their lease; for any other
broker ``running_notes()`` returns None and the dashboard says so.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from tandem.backends.base import TandemBackend
from tandem.brokers.base import RUNNING
from tandem.brokers.database import DatabaseBroker
from tandem.models import TaskRecord, WorkerRecord

CANCEL_REQUESTED = "cancel requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningNote:
    record: TaskRecord
    note: str


def lost_note(lease_expires_at: datetime | None, now: datetime, heartbeat: float) -> str:
    """ "worker lost — recovered within N s": the rest of the lease, plus one heartbeat of a live
    supervisor to notice it."""
    left = 0.0 if lease_expires_at is None else (lease_expires_at - now).total_seconds()
    return f"worker lost — recovered within {math.ceil(max(0.0, left) + heartbeat)} s"


def note_for(
    record: TaskRecord, now: datetime, live_workers: Collection[str], heartbeat: float
) -> str | None:
    """The note for one task row (None: nothing to say)."""
    if record.status != RUNNING:
        return None
    notes = []
    if record.worker_id and record.worker_id not in live_workers:
        notes.append(lost_note(record.lease_expires_at, now, heartbeat))
    if record.cancel_requested_at is not None:
        notes.append(CANCEL_REQUESTED)
    return "; ".join(notes) or None


def live_worker_ids(database: str, backend: str, now: datetime, lease: float) -> set[str]:
    """Workers of ``backend`` that heartbeat within the lease (as ``status`` counts them)."""
    return set(
        WorkerRecord.objects.using(database)
        .filter(backend=backend, last_heartbeat_at__gte=now - timedelta(seconds=lease))
        .values_list("id", flat=True)
    )


def running_notes(
    backend: TandemBackend, now: datetime, limit: int = 20
) -> list[RunningNote] | None:
    """RUNNING tasks of ``backend`` with a lost worker or a cancel request (oldest first), or
    None when the store cannot say."""
    broker = backend.broker
    if not isinstance(broker, DatabaseBroker):
        return None
    options = backend.tandem_options
    live = live_worker_ids(broker.database, backend.alias, now, options.lease_seconds)
    rows = (
        TaskRecord.objects.using(broker.database)
        .filter(backend=backend.alias, status=RUNNING)
        .order_by("started_at")
        .only(
            "id",
            "task_path",
            "queue_name",
            "status",
            "worker_id",
            "lease_expires_at",
            "cancel_requested_at",
            "started_at",
        )
    )
    notes = []
    for record in rows.iterator():
        note = note_for(record, now, live, options.heartbeat_interval)
        if note:
            notes.append(RunningNote(record=record, note=note))
            if len(notes) >= limit:
                break
    return notes


__all__ = ["CANCEL_REQUESTED", "RunningNote", "lost_note", "note_for", "running_notes"]

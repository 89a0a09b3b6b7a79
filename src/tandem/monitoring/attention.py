"""RUNNING tasks that are not simply running: their worker is gone, or a cancel was requested.

A task whose worker stopped heartbeating stays RUNNING until its lease ends; then the next
heartbeat of any live supervisor recovers it (back to READY, or FAILED when its attempts are
spent). So the note says when: "worker lost — recovered within N s". A RUNNING task with a cancel
request runs on until its code checks ``context.cancelled`` (or a process pool kills it): its
note is "cancel requested".

Every store answers (``Broker.running`` and ``Broker.workers``): database, Redis and memory alike.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from tandem.backends.base import TandemBackend
from tandem.brokers.base import RUNNING, Broker, StoredTask

CANCEL_REQUESTED = "cancel requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningNote:
    task: StoredTask
    note: str


def lost_note(lease_expires_at: datetime | None, now: datetime, heartbeat: float) -> str:
    """ "worker lost — recovered within N s": the rest of the lease, plus one heartbeat of a live
    supervisor to notice it."""
    left = 0.0 if lease_expires_at is None else (lease_expires_at - now).total_seconds()
    return f"worker lost — recovered within {math.ceil(max(0.0, left) + heartbeat)} s"


def note_for(
    task: StoredTask, now: datetime, live_workers: Collection[str], heartbeat: float
) -> str | None:
    """The note for one task (None: nothing to say)."""
    if task.status != RUNNING:
        return None
    notes = []
    if task.worker_id and task.worker_id not in live_workers:
        notes.append(lost_note(task.lease_expires_at, now, heartbeat))
    if task.cancel_requested_at is not None:
        notes.append(CANCEL_REQUESTED)
    return "; ".join(notes) or None


def live_worker_ids(broker: Broker, now: datetime, lease: float) -> set[str]:
    """Workers of the broker's backend that heartbeat within the lease (as ``status`` counts
    them)."""
    since = now - timedelta(seconds=lease)
    return {w.id for w in broker.workers() if w.last_heartbeat_at >= since}


#: RUNNING tasks read per check: the notes are for the few that need a look, not a listing.
SCANNED = 500


def running_notes(backend: TandemBackend, now: datetime, limit: int = 20) -> list[RunningNote]:
    """RUNNING tasks of ``backend`` with a lost worker or a cancel request (earliest started
    first, at most ``limit``)."""
    broker = backend.broker
    options = backend.tandem_options
    live = live_worker_ids(broker, now, options.lease_seconds)
    notes = []
    for task in broker.running(SCANNED):
        note = note_for(task, now, live, options.heartbeat_interval)
        if note:
            notes.append(RunningNote(task=task, note=note))
            if len(notes) >= limit:
                break
    return notes


__all__ = [
    "CANCEL_REQUESTED",
    "RunningNote",
    "live_worker_ids",
    "lost_note",
    "note_for",
    "running_notes",
]

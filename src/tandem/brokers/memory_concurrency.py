"""Per-key concurrency limits in the memory twin: a key's slots are its RUNNING tasks.

Every claim runs under the broker's lock, so counting the RUNNING tasks of a key is exact; an
attempt's settle, release or recovery moves its task out of RUNNING, which is what frees the slot
(the database and Redis stores keep an explicit slot per attempt to the same effect).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from tandem.brokers.base import FAILED, RUNNING, StoredTask, concurrency_limited_error

if TYPE_CHECKING:
    from tandem.brokers.memory_rates import RateGate


def running_per_key(tasks: Iterable[StoredTask]) -> Counter[tuple[str, str]]:
    """(backend, key) -> how many of ``tasks`` are RUNNING with that key."""
    return Counter(
        (t.backend, t.concurrency_key)
        for t in tasks
        if t.status == RUNNING and t.concurrency_key is not None
    )


def waits(task: StoredTask, running: Mapping[tuple[str, str], int]) -> bool:
    """Whether ``task`` must wait for a slot of its key (``"discard"`` tasks never wait)."""
    return (
        task.concurrency_key is not None
        and task.on_limit == "wait"
        and running.get((task.backend, task.concurrency_key), 0) >= task.concurrency_limit
    )


def take(
    tasks: dict[str, StoredTask],
    candidates: Iterable[StoredTask],
    limit: int,
    started: dict[str, object],
    now: datetime,
    gate: RateGate | None = None,
) -> tuple[list[StoredTask], list[str]]:
    """Claim the first ``limit`` of ``candidates`` (claimable tasks, in claim order): a keyed
    task takes a slot when its key has one free, and is skipped (``"wait"``) or ends FAILED with
    ``ConcurrencyLimited`` (``"discard"``) otherwise — so, as on the other stores, a batch that
    picked two tasks of a full key claims fewer than ``limit``. ``started``: the fields a claim
    sets. ``gate``: the claim's rate limits — a task over a rate is skipped (stays READY) and does
    not count against ``limit``, so it never holds back the tasks behind it. Returns the claimed
    tasks and the ids of the discarded ones."""
    running = running_per_key(tasks.values())
    claimed: list[StoredTask] = []
    discarded: list[str] = []
    picked = 0
    for task in candidates:
        if picked >= limit:
            break
        if gate is not None and not gate.admits(task):
            continue
        picked += 1
        if task.concurrency_key is not None:
            slot = (task.backend, task.concurrency_key)
            if running[slot] >= task.concurrency_limit:
                if task.on_limit == "discard":
                    tasks[task.id] = replace(
                        task,
                        status=FAILED,
                        errors=(*task.errors, concurrency_limited_error(task, now)),
                        finished_at=now,
                        unique_key=None,
                    )
                    discarded.append(task.id)
                continue
            running[slot] += 1
        task = replace(
            task,
            status=RUNNING,
            started_at=task.started_at or now,
            worker_ids=(*task.worker_ids, str(started["worker_id"])),
            **started,  # type: ignore[arg-type]
        )
        tasks[task.id] = task
        claimed.append(task)
        if gate is not None:
            gate.record(task)
    return claimed, discarded

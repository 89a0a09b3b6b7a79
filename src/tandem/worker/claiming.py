"""How a round claims for one pool: the tasks that waited past the pool's ``starvation_limit``
first (checked now and then), then the usual claim by priority; and when to claim for the pool
again (at once while there may be more, or when a wake-up came during the round; else at the
next poll).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tandem.brokers.base import Broker, StoredTask
from tandem.worker.pool_state import PoolState

#: The starvation check (``Broker.claim_starved``) runs at most every ``starvation_limit``
#: divided by this, and at most this many seconds apart (10 s for the default 300 s limit).
STARVATION_CHECKS = 30
STARVATION_CHECK_MAX = 10.0


def claim_for_pool(
    broker: Broker,
    state: PoolState,
    *,
    worker_id: str,
    lease: timedelta,
    now: datetime,
    free: int,
    round_started: float,
) -> list[StoredTask]:
    """Claim up to ``free`` tasks for ``state`` (inside the round's transaction) when it is due;
    the caller submits them. ``round_started``: the monotonic start of the round (see below)."""
    if not claim_due(state, now, free):
        return []
    state.dirty = False
    claimed = claim_starved(broker, state, worker_id=worker_id, lease=lease, now=now, free=free)
    if len(claimed) < free:
        claimed += broker.claim(
            state.config.queues,
            free - len(claimed),
            worker_id,
            now + lease,
            now,
            rate_limit=state.config.rate_limit,
        )
    state.exhausted = len(claimed) < free
    if state.exhausted and state.woken >= round_started:
        # Woken during this round: the task may have been enqueued after ``now`` (due
        # later than this claim could see). Claim again at once, with a fresh clock, rather
        # than wait for the next poll: the wake-up would be lost.
        state.dirty = True
    elif state.exhausted:
        state.next_poll = now + timedelta(seconds=state.config.poll_interval)
    else:
        state.dirty = True  # there may be more; claim again as soon as a slot frees
    return claimed


def announce_claim(
    broker: Broker,
    state: PoolState,
    *,
    worker_id: str,
    lease: timedelta,
    now: datetime,
    free: int,
) -> bool:
    """Tell the store, before the round's settle, the claim ``claim_for_pool`` is about to
    make for ``state`` with the same arguments (``DatabaseClaims.claim_ahead``), so the settle
    can send it in its own message (PostgreSQL: one round trip less per round). Only where
    that claim is the pool's whole claim: due, and no starvation check due first (its finds
    would shrink the claim). Whether the store took it (a store without rides never does)."""
    ahead = getattr(broker, "claim_ahead", None)
    if ahead is None or not claim_due(state, now, free):
        return False
    due = state.next_starvation_check
    if due is None or now >= due:
        return False
    return bool(
        ahead(
            state.config.queues,
            free,
            worker_id,
            now + lease,
            now,
            rate_limit=state.config.rate_limit,
        )
    )


def claim_due(state: PoolState, now: datetime, free: int) -> bool:
    """Whether ``claim_for_pool`` claims for ``state`` now: it has free slots, and new work was
    announced (``dirty``: a wake-up, a freed slot, more left last time) or its poll is due."""
    return free > 0 and (state.dirty or state.next_poll is None or now >= state.next_poll)


def claim_starved(
    broker: Broker,
    state: PoolState,
    *,
    worker_id: str,
    lease: timedelta,
    now: datetime,
    free: int,
) -> list[StoredTask]:
    """Tasks that waited past the pool's ``starvation_limit``, whatever their priority,
    ahead of the usual claim. Checked now and then (``STARVATION_CHECKS``), and again at
    once while it finds more than the free slots take."""
    due = state.next_starvation_check
    if due is not None and now < due:
        return []
    limit = state.config.starvation_limit
    starved = broker.claim_starved(
        state.config.queues,
        free,
        worker_id,
        now + lease,
        now,
        now - timedelta(seconds=limit),
        rate_limit=state.config.rate_limit,
    )
    if len(starved) < free:
        pause = min(limit / STARVATION_CHECKS, STARVATION_CHECK_MAX)
        state.next_starvation_check = now + timedelta(seconds=pause)
    return starved


__all__ = [
    "STARVATION_CHECKS",
    "STARVATION_CHECK_MAX",
    "announce_claim",
    "claim_due",
    "claim_for_pool",
    "claim_starved",
]

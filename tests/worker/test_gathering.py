"""Gathering endings (``Bookkeeping._gather_endings``): while a pool's workers have claimed-ahead
tasks to go on with, a round waits up to ``SETTLE_LINGER`` after the previous one so that the
endings arriving one by one are settled together; anything that needs the supervisor now (new
work, a stop, a lost lease, ``SETTLE_BATCH`` endings, an idle worker) does not wait."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import pytest

from tandem.conf import PoolConfig
from tandem.worker.bookkeeping import SETTLE_BATCH, SETTLE_LINGER, Bookkeeping
from tandem.worker.heartbeat import LostAttempt
from tandem.worker.pool_state import PoolState
from tandem.worker.pools.threads import ThreadPool


class RecordingEvent(threading.Event):
    """An event that records the timeouts it was waited with (and never blocks)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


class Ready(ThreadPool):
    def __init__(self, config: PoolConfig, ready: int) -> None:
        super().__init__(config, lambda outcome: None)
        self.ready = ready

    def ready_workers(self) -> int:
        return self.ready


def keeper(in_flight: int, ready: int, endings: int) -> Any:
    """A supervisor's bookkeeping with one pool: ``in_flight`` attempts, ``ready`` workers and
    ``endings`` of them delivered but not yet settled; the previous round just ended."""
    config = PoolConfig(
        name="p",
        queues=("default",),
        workers=ready,
        executor="thread",
        poll_interval=1.0,
        max_attempts=1,
        backoff=1.0,
    )
    keeper: Any = Bookkeeping()
    state = PoolState(config=config, pool=Ready(config, ready))
    state.in_flight = {f"t{n}": object() for n in range(in_flight)}  # type: ignore[misc]
    keeper.pools = [state]
    keeper._by_queue = {"default": state}
    keeper._outcomes = collections.deque(object() for _ in range(endings))
    keeper._wake = threading.Event()
    keeper._urgent = RecordingEvent()
    keeper._round_ended = time.monotonic()
    keeper._stopping = 0
    keeper._stop_requests = 0
    keeper._handing = []
    keeper._lost = collections.deque()
    keeper._flight_lock = threading.Lock()
    keeper.lost_attempts = 0
    return keeper


def test_endings_wait_for_the_next_round_while_workers_have_tasks_claimed_ahead() -> None:
    supervisor = keeper(in_flight=10, ready=2, endings=1)  # 9 running: 7 of them claimed ahead
    supervisor._gather_endings()
    [waited] = supervisor._urgent.waits
    assert waited is not None and 0 < waited <= SETTLE_LINGER


@pytest.mark.parametrize(
    ("in_flight", "ready", "endings", "why"),
    [
        (3, 2, 1, "a worker is about to be idle: its next task is the round's claim"),
        (2, 2, 2, "every attempt has ended"),
        (10, 2, 0, "no ending to settle"),
    ],
)
def test_a_round_goes_at_once_when_no_worker_has_work_to_go_on_with(
    in_flight: int, ready: int, endings: int, why: str
) -> None:
    supervisor = keeper(in_flight=in_flight, ready=ready, endings=endings)
    supervisor._gather_endings()
    assert supervisor._urgent.waits == [], why


def test_a_round_goes_at_once_once_the_linger_has_passed_or_while_stopping() -> None:
    late = keeper(in_flight=10, ready=2, endings=1)
    late._round_ended -= SETTLE_LINGER
    late._gather_endings()
    assert late._urgent.waits == []

    stopping = keeper(in_flight=10, ready=2, endings=1)
    stopping._stopping = 1
    stopping._gather_endings()
    assert stopping._urgent.waits == []


def test_new_work_a_stop_a_lost_lease_or_many_endings_cut_the_wait_short() -> None:
    supervisor = keeper(in_flight=200, ready=2, endings=0)
    supervisor.notify(["default"])
    assert supervisor._urgent.is_set()

    supervisor._urgent.clear()
    supervisor.request_stop()
    assert supervisor._urgent.is_set()

    supervisor = keeper(in_flight=200, ready=2, endings=0)
    lost = LostAttempt(
        pool="p", task_id="t1", attempt_token="a1", reason="test", at=0.0, deadline=None
    )
    supervisor._stop_lost(lost)
    assert supervisor._urgent.is_set()

    supervisor = keeper(in_flight=200, ready=2, endings=0)
    for _ in range(SETTLE_BATCH - 1):
        supervisor._deliver(object())
    assert not supervisor._urgent.is_set()
    supervisor._deliver(object())
    assert supervisor._urgent.is_set()

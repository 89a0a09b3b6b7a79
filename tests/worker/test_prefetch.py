"""Claiming ahead (a pool's ``prefetch``): short tasks are claimed in batches larger than the
pool's free workers, so one write transaction settles and claims many; long tasks never are, so a
host does not sit on work that another host could start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tandem.brokers.base import READY, RUNNING, SUCCESSFUL
from tandem.conf import AUTO_PREFETCH_PER_WORKER, PREFETCH_WINDOW, PoolConfig
from tandem.models import TaskRecord
from tandem.worker.pools.threads import ThreadPool
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness
from tests.tasks import gate, gated, noop


def thread_pool(workers: int, prefetch: int | None = None) -> ThreadPool:
    config = PoolConfig(
        name="p",
        queues=("default",),
        workers=workers,
        executor="thread",
        poll_interval=1.0,
        max_attempts=1,
        backoff=1.0,
        prefetch=prefetch,
    )
    return ThreadPool(config, lambda outcome: None)


def test_automatic_prefetch_follows_the_pace_of_recent_tasks() -> None:
    pool = thread_pool(workers=4)
    assert pool.prefetch() == 0  # nothing measured yet: claim only for free workers

    pool._timed(0.005)  # 5 ms tasks: 25 ms of work is 5 per worker
    assert pool.prefetch() == 4 * int(PREFETCH_WINDOW / 0.005) == 20

    pool._timed(0.000_05)  # the average moves a fifth of the way at a time
    assert 0 < pool._pace < 0.005

    fast = thread_pool(workers=4)
    fast._timed(0.000_01)  # tiny tasks: capped per worker
    assert fast.prefetch() == 4 * AUTO_PREFETCH_PER_WORKER

    slow = thread_pool(workers=4)
    slow._timed(PREFETCH_WINDOW)  # tasks as long as the window: nothing claimed ahead
    assert slow.prefetch() == 0


def test_a_fixed_prefetch_is_used_as_it_is() -> None:
    assert thread_pool(workers=2, prefetch=0).prefetch() == 0
    pool = thread_pool(workers=2, prefetch=7)
    pool._timed(10.0)
    assert pool.prefetch() == 7


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("threads")
def test_supervisor_claims_free_workers_plus_the_prefetch_and_runs_them_all(
    harness: Harness, tandem_settings: Callable[..., None]
) -> None:
    tandem_settings(pools={"default": {"workers": 1, "prefetch": 3}})
    held = gated.enqueue("prefetch")
    waiting = [noop.enqueue() for _ in range(5)]
    supervisor = harness.supervisor(clock=FrozenClock())

    assert supervisor.step() == 4  # one for the worker, three waiting in the pool's inbox
    claimed = TaskRecord.objects.filter(status=RUNNING).count()
    assert claimed == 4
    assert TaskRecord.objects.filter(status=READY).count() == 2
    assert supervisor.step() == 0  # nothing finished: no room to claim more

    gate("prefetch").set()
    harness.wait_for_outcomes(supervisor, 4)  # the worker ran the held task, then the three
    supervisor.step()
    for _ in range(20):
        if TaskRecord.objects.filter(status=SUCCESSFUL).count() == 6:
            break
        harness.wait_for_outcomes(supervisor, 1)
        supervisor.step()
    assert TaskRecord.objects.filter(status=SUCCESSFUL).count() == 6
    assert {str(r.id) for r in TaskRecord.objects.all()} == {held.id, *(r.id for r in waiting)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("threads")
def test_prefetch_zero_claims_only_for_free_workers(
    harness: Harness, tandem_settings: Callable[..., None]
) -> None:
    tandem_settings(pools={"default": {"workers": 2, "prefetch": 0}})
    for _ in range(6):
        noop.enqueue()
    supervisor = harness.supervisor(clock=FrozenClock())
    assert supervisor.step() == 2
    harness.wait_for_outcomes(supervisor, 2)
    assert supervisor.step() == 4  # settled two, claimed two: never more than the workers
    assert len(supervisor.pools[0].in_flight) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("option", "expected"), [({}, 1), ({"sqlite_worker_synchronous": None}, 2)]
)
def test_supervisor_writes_skip_the_fsync_on_sqlite_unless_told_not_to(
    harness: Harness, tandem_settings: Callable[..., None], option: dict[str, Any], expected: int
) -> None:
    """``PRAGMA synchronous`` 1 is NORMAL (no fsync per commit in WAL mode), 2 FULL (SQLite's
    default, kept for ``enqueue()``); only the supervisor's own connection changes."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    tandem_settings(**option)
    noop.enqueue()
    supervisor = harness.supervisor(clock=FrozenClock())
    supervisor.step()  # the supervisor runs in this thread: its connection is this one
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == expected


def test_the_most_recently_idle_worker_takes_the_next_task() -> None:
    """LIFO hand-over: under light load one warm worker runs task after task; the backlog is
    served in order once every worker is busy."""
    import threading

    from tandem.worker.pools.slots import Slot

    pool = thread_pool(workers=2)
    first, second = Slot(lambda outcome: None), Slot(lambda outcome: None)
    got: dict[str, Any] = {}

    def wait(name: str, slot: Slot) -> threading.Thread:
        thread = threading.Thread(target=lambda: got.__setitem__(name, pool._next(slot)))
        thread.start()
        return thread

    idle_first = wait("first", first)
    wait_until_idle(pool, 1)
    idle_second = wait("second", second)
    wait_until_idle(pool, 2)
    pool._put("task-1")  # type: ignore[arg-type]
    idle_second.join(5)
    assert got == {"second": "task-1"}  # not the worker that has waited longest
    pool._put("task-2")  # type: ignore[arg-type]
    idle_first.join(5)
    assert got == {"second": "task-1", "first": "task-2"}
    pool._put("task-3")  # type: ignore[arg-type]
    pool._put("task-4")  # type: ignore[arg-type]
    assert [pool._next(first), pool._next(second)] == ["task-3", "task-4"]  # backlog: in order


def wait_until_idle(pool: ThreadPool, count: int) -> None:
    import time

    deadline = time.monotonic() + 5
    while len(pool._idle) < count:
        assert time.monotonic() < deadline, "the worker never went idle"
        time.sleep(0.001)


def test_stop_never_starts_a_task_still_waiting_in_the_backlog() -> None:
    """After a forced stop released them, claimed-ahead tasks must not start on their own."""
    pool = thread_pool(workers=1)
    pool._put("released-1")  # type: ignore[arg-type]
    pool._put("released-2")  # type: ignore[arg-type]
    assert pool.stop(timeout=0)  # (no worker threads were started)
    assert list(pool._backlog) == []  # (and no worker: no stop signal either)


def test_a_task_waiting_in_the_backlog_can_be_taken_out() -> None:
    """What cancelling a claimed-ahead task uses: it leaves the backlog and never starts."""
    from types import SimpleNamespace

    pool = thread_pool(workers=1)
    first, second = SimpleNamespace(id="a"), SimpleNamespace(id="b")
    pool._put(first)  # type: ignore[arg-type]
    pool._put(second)  # type: ignore[arg-type]
    assert pool._take_waiting("b") is second
    assert pool._take_waiting("b") is None
    assert list(pool._backlog) == [first]

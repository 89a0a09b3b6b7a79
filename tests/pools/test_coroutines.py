"""``async def`` tasks: one event loop per worker, ``async_concurrency`` coroutines in flight,
in every executor; timeouts and ``tandem.cancel`` cancel the coroutine; the async ORM works."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.tasks import TaskResultStatus

import tandem
from tandem.brokers.base import FAILED, RUNNING
from tandem.models import TaskRecord
from tests import tasks
from tests.models import Ledger
from tests.pools.conftest import EXECUTORS, pool
from tests.support import redis_store
from tests.support.doubles import FrozenClock, wait_for
from tests.support.harness import Harness

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_hundred_coroutines_run_at_once_on_one_worker(
    executor: str, use_pools: Any, drain: Any, tmp_path: pathlib.Path
) -> None:
    """100 tasks each awaiting 1 s, on a pool of ONE worker: each waits at a gate until all 100
    have arrived, so they finish only if all were in flight together (one at a time, the first
    would wait alone); the ledger of start and end times shows every one overlapping all."""
    use_pools(pools=pool(executor, workers=1))
    gate = str(tmp_path / "arrived")
    results = [tasks.async_rendezvous.enqueue(gate, f"t{i}", 100, 1.0) for i in range(100)]
    supervisor = drain()
    ledger = []
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
        ledger.append(result.return_value)
    assert all(entry["met"] for entry in ledger), "the 100 coroutines were never all in flight"
    assert max(e["started"] for e in ledger) < min(e["ended"] for e in ledger)
    assert len({(e["pid"], e["interpreter"]) for e in ledger}) == 1, "one worker, one loop"
    place = ledger[0]
    if executor == "thread":
        assert (place["pid"], place["interpreter"]) == (os.getpid(), 0)
    elif executor == "subinterpreter":
        assert place["pid"] == os.getpid() and place["interpreter"] != 0
    else:
        assert place["pid"] != os.getpid()
    state = supervisor.pools[0]
    assert state.pool.restarts == 0


@pytest.mark.parametrize("executor", EXECUTORS)
def test_async_concurrency_caps_the_coroutines_in_flight(
    executor: str, use_pools: Any, drain: Any, tmp_path: pathlib.Path
) -> None:
    """With ``async_concurrency`` 3, six tasks that wait for three arrivals run three and
    three: the gate proves at least three at once, the peak no more than three."""
    use_pools(pools=pool(executor, workers=1, async_concurrency=3))
    gate = str(tmp_path / "arrived")
    results = [tasks.async_rendezvous.enqueue(gate, f"t{i}", 3, 0.05) for i in range(6)]
    drain()
    peaks = []
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
        assert result.return_value["met"]
        peaks.append(result.return_value["peak"])
    assert max(peaks) == 3


@pytest.mark.parametrize("executor", EXECUTORS)
def test_sync_tasks_keep_their_slot_beside_coroutines(
    executor: str, use_pools: Any, drain: Any, tmp_path: pathlib.Path
) -> None:
    """A sync task and coroutines on a pool of one worker: the coroutines meet while the sync
    task has its slot, and everything ends with its own outcome."""
    use_pools(pools=pool(executor, workers=1))
    gate = str(tmp_path / "arrived")
    sync = tasks.add.enqueue(2, 3)
    coroutines = [tasks.async_rendezvous.enqueue(gate, f"t{i}", 5, 0.01) for i in range(5)]
    failing = tasks.async_fail.enqueue("async boom")
    drain()
    sync.refresh()
    failing.refresh()
    assert sync.status == TaskResultStatus.SUCCESSFUL and sync.return_value == 5
    for result in coroutines:
        result.refresh()
        assert result.return_value["met"]
    assert failing.status == TaskResultStatus.FAILED
    assert failing.errors[-1].exception_class_path == "builtins.ValueError"
    assert "async boom" in failing.errors[-1].traceback


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_timeout_cancels_the_coroutine(
    executor: str, use_pools: Any, drain: Any, tmp_path: pathlib.Path
) -> None:
    use_pools(pools=pool(executor, workers=1, timeout=1))
    marker = str(tmp_path / "slow")
    slow = tasks.async_until_cancelled.enqueue(marker, 60)
    after = tasks.async_add.enqueue(1, 2)
    drain()
    slow.refresh()
    after.refresh()
    assert slow.status == TaskResultStatus.FAILED
    assert slow.errors[-1].exception_class_path == "tandem.exceptions.TaskTimeout"
    assert "its coroutine was cancelled" in slow.errors[-1].traceback
    assert os.path.exists(f"{marker}.cancelled"), "the coroutine ran on past its timeout"
    assert after.status == TaskResultStatus.SUCCESSFUL and after.return_value == 3


@pytest.mark.parametrize("executor", EXECUTORS)
def test_cancel_cancels_a_running_coroutine(
    executor: str, harness: Harness, tandem_settings: Callable[..., None], tmp_path: pathlib.Path
) -> None:
    tandem_settings(pools={"default": {"workers": 1, "executor": executor}})
    clock = FrozenClock()
    marker = str(tmp_path / "cancel")
    result = tasks.async_until_cancelled.enqueue(marker, 60)
    supervisor = harness.supervisor(workers=1, clock=clock)
    supervisor.step()
    wait_for(lambda: TaskRecord.objects.get(id=result.id).status == RUNNING, "the claim")
    wait_for(lambda: os.path.exists(f"{marker}.started"), "the coroutine to start", 90)
    assert tandem.cancel(result.id) == tandem.CancelOutcome.REQUESTED
    clock.advance(supervisor.options.heartbeat_interval + 1)
    supervisor.step()  # heartbeat: sees the request, cancels the coroutine, settles it
    wait_for(
        lambda: supervisor.step() >= 0 and TaskRecord.objects.get(id=result.id).status == FAILED,
        "the cancellation to be settled",
    )
    result.refresh()
    assert result.errors[-1].exception_class_path == "tandem.exceptions.Cancelled"
    assert "its coroutine was cancelled" in result.errors[-1].traceback
    wait_for(lambda: os.path.exists(f"{marker}.cancelled"), "the coroutine to be cancelled")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_the_async_orm_works_in_coroutine_tasks(executor: str, use_pools: Any, drain: Any) -> None:
    """Many coroutines using the async ORM at once, twice over (a second drain finds no closed
    connection left behind by the first)."""
    use_pools(pools=pool(executor, workers=1))
    for round_number in range(2):
        results = [tasks.async_orm.enqueue(f"orm-{round_number}-{i}") for i in range(20)]
        drain()
        for result in results:
            result.refresh()
            assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
            assert len(result.return_value) == 1
    assert Ledger.objects.filter(key__startswith="orm-").count() == 40


@pytest.fixture
def on_redis(settings: Any) -> Iterator[Callable[..., None]]:
    """TASKS['default'] on a RedisBackend; ``apply(pools)`` sets its pools."""
    client = redis_store.client()  # fails (never skips) without Redis

    def apply(pools: dict[str, Any]) -> None:
        settings.TASKS = {
            "default": {
                "BACKEND": redis_store.REDIS_BACKEND,
                "QUEUES": ["default", "critical", "exports"],
                "OPTIONS": {**redis_store.backend_options(), "lease_seconds": 60, "pools": pools},
            }
        }

    yield apply
    redis_store.delete_keys(client)


@pytest.mark.redis
@pytest.mark.parametrize("executor", EXECUTORS)
def test_coroutines_run_at_once_and_are_cancelled_on_redis(
    executor: str, on_redis: Callable[..., None], drain: Any, tmp_path: pathlib.Path
) -> None:
    """The same on the Redis store: 20 coroutines meet on one worker; a timeout cancels one."""
    on_redis(pool(executor, workers=1, timeout=5))
    gate = str(tmp_path / "arrived")
    marker = str(tmp_path / "slow")
    results = [tasks.async_rendezvous.enqueue(gate, f"t{i}", 20, 0.1) for i in range(20)]
    slow = tasks.async_until_cancelled.enqueue(marker, 60)
    drain()
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
        assert result.return_value["met"]
    slow.refresh()
    assert slow.errors[-1].exception_class_path == "tandem.exceptions.TaskTimeout"
    assert os.path.exists(f"{marker}.cancelled")


def test_a_dead_event_loop_process_fails_its_coroutines_and_a_fresh_one_runs_the_next(
    use_pools: Any, drain: Any
) -> None:
    use_pools(pools=pool("process", workers=1))
    crash = tasks.async_hard_exit.enqueue(7)
    drain()
    after = tasks.async_add.enqueue(2, 2)
    drain()
    crash.refresh()
    after.refresh()
    assert crash.status == TaskResultStatus.FAILED
    assert crash.errors[-1].exception_class_path == "tandem.exceptions.WorkerCrashed"
    assert "exit code 7" in crash.errors[-1].traceback
    assert after.status == TaskResultStatus.SUCCESSFUL and after.return_value == 4


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_lost_lease_cancels_the_coroutine_and_delivers_nothing(
    executor: str, harness: Harness, tandem_settings: Callable[..., None], tmp_path: pathlib.Path
) -> None:
    tandem_settings(pools={"default": {"workers": 1, "executor": executor}})
    marker = str(tmp_path / "lost")
    result = tasks.async_until_cancelled.enqueue(marker, 60)
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())
    supervisor.step()
    wait_for(lambda: os.path.exists(f"{marker}.started"), "the coroutine to start", 90)
    state = supervisor.pools[0]
    task = state.in_flight[result.id]
    assert state.pool.stop_attempt(task.id, task.attempt_token)
    wait_for(lambda: os.path.exists(f"{marker}.cancelled"), "the coroutine to be cancelled")
    assert not state.pool.runs_coroutines
    assert not state.pool.stop_attempt(task.id, task.attempt_token)  # ended already
    supervisor.step()
    assert TaskRecord.objects.get(id=result.id).status == RUNNING  # no outcome was delivered

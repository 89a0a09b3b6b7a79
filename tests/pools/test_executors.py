"""The three execution pools: where tasks run, parallelism, timeouts, crashes, restarts.

Each cell of the capability table in docs/explanation/pools.md is backed by a test here.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Any

import pytest
from django.conf import settings
from django.tasks import TaskResultStatus
from django.tasks.signals import task_finished

from tandem.brokers.base import RUNNING
from tandem.models import TaskRecord
from tests import tasks
from tests.support.conformance import capture
from tests.support.pools import EXECUTORS, needs_subinterpreters, pool

pytestmark = pytest.mark.django_db(transaction=True)

#: What a pool does with a timeout, a crash, a recycle or a stuck worker does not depend on the
#: run's SQL database: those tests run once, in the SQLite run. Where a task runs (the drivers in
#: a subinterpreter, the default executor per database) and isolation run on every database.
ONCE = pytest.mark.once


def _run(drain: Any, **kwargs: Any) -> Any:
    return drain(**kwargs)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_tasks_run_where_the_pool_says(executor: str, use_pools: Any, drain: Any) -> None:
    use_pools(pools=pool(executor, workers=2))
    results = [tasks.where.enqueue() for _ in range(4)]
    supervisor = drain()
    places = []
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        places.append(result.return_value)
    pids = {p["pid"] for p in places}
    interpreters = {p["interpreter"] for p in places}
    if executor == "thread":
        assert pids == {os.getpid()} and interpreters == {0}
    elif executor == "subinterpreter":
        assert pids == {os.getpid()} and 0 not in interpreters
    else:
        assert os.getpid() not in pids and interpreters == {0}
    assert all(s.pool.restarts == 0 for s in supervisor.pools)


PARALLEL = ["process"] + (["subinterpreter"] if "subinterpreter" in EXECUTORS else [])


@ONCE
@pytest.mark.parametrize("executor", PARALLEL)
def test_cpu_bound_tasks_overlap(
    executor: str, use_pools: Any, drain: Any, tmp_path: pathlib.Path
) -> None:
    """Two tasks each wait, at a gate, until both have arrived: with two workers they meet (a
    pool that ran them one after the other would leave the first waiting alone), then spin."""
    use_pools(pools=pool(executor, workers=2))
    gate = str(tmp_path / "arrived")
    first = tasks.rendezvous.enqueue(gate, "first", 2, 0.2)
    second = tasks.rendezvous.enqueue(gate, "second", 2, 0.2)
    drain()
    first.refresh()
    second.refresh()
    a, b = first.return_value, second.return_value
    assert (a["interpreter"], a["pid"]) != (b["interpreter"], b["pid"])
    assert a["met"] and b["met"], "the two tasks were never in flight at the same time"


@ONCE
@pytest.mark.parametrize("executor", EXECUTORS)
def test_timeout_fails_the_task_and_the_pool_keeps_its_size(
    executor: str, use_pools: Any, drain: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 s, not less: the task after the timeout runs in a fresh child (process), whose idle-class
    # thread a loaded machine can keep off the CPU for more than a second.
    use_pools(pools=pool(executor, workers=1, timeout=2))
    if executor == "subinterpreter":
        # The watchdog's exception lands when the interpreter's idle-class thread next runs; on
        # a loaded machine that took longer than the 2 s before a stuck interpreter is retired.
        from tandem.worker.pools.subinterpreters import SubinterpreterPool

        monkeypatch.setattr(SubinterpreterPool, "overdue_grace", 30.0)
    slow = tasks.spin.enqueue(30)
    # Its own timeout (a minute): the pool's 2 s is for the slow task; a fresh child on a loaded
    # machine took longer than that for the next one.
    after = tasks.where_unhurried.enqueue()
    with capture(task_finished) as finished:
        supervisor = drain()  # its close() sends the pending task_finished signals
    slow.refresh()
    after.refresh()
    assert slow.status == TaskResultStatus.FAILED
    assert slow.errors[-1].exception_class_path == "tandem.exceptions.TaskTimeout"
    # Ended by tandem (a process is killed) or by its watchdog: one task_finished, FAILED.
    assert [e["status"] for e in finished if e["id"] == slow.id] == [TaskResultStatus.FAILED]
    # The pool went on with a working worker after the timeout.
    assert after.status == TaskResultStatus.SUCCESSFUL, after.errors
    state = supervisor.pools[0]
    if executor == "subinterpreter":
        # The watchdog inside the interpreter interrupted the loop: no replacement needed.
        assert state.pool.restarts == 0
    else:
        # Thread: the slot went to a fresh thread; process: the child was killed and replaced.
        assert state.pool.restarts == 1
    assert not TaskRecord.objects.filter(status=RUNNING).exists()


@ONCE
def test_thread_timeout_is_cooperative_only(use_pools: Any, drain: Any) -> None:
    """A thread cannot be stopped: the attempt ends at the deadline but the code runs on."""
    import threading

    use_pools(pools=pool("thread", workers=1, timeout=0.3))
    gate = tasks.gate("cooperative-timeout")
    gate.clear()
    # Thread objects, not idents: a thread of an earlier test that ends meanwhile frees its
    # ident for the pool's new thread (seen under load), which an ident check then ignored.
    before = set(threading.enumerate())
    slow = tasks.gated.enqueue("cooperative-timeout", 60)  # blocks until the gate opens
    try:
        drain()
        slow.refresh()
        assert slow.errors[-1].exception_class_path == "tandem.exceptions.TaskTimeout"
        still_running = [
            t
            for t in threading.enumerate()
            if t not in before and t.name.startswith("tandem-default-thread-") and t.is_alive()
        ]
        assert still_running, "the timed-out task's thread should still be running its code"
    finally:
        gate.set()
    for thread in still_running:
        thread.join(10)


@ONCE
def test_process_child_crash_is_recorded_and_replaced(use_pools: Any, drain: Any) -> None:
    use_pools(pools=pool("process", workers=1))
    crash = tasks.hard_exit.enqueue(7)
    after = tasks.where.enqueue()
    supervisor = drain()
    crash.refresh()
    after.refresh()
    assert crash.status == TaskResultStatus.FAILED
    assert crash.errors[-1].exception_class_path == "tandem.exceptions.WorkerCrashed"
    assert "exit code 7" in crash.errors[-1].traceback
    assert after.status == TaskResultStatus.SUCCESSFUL
    assert supervisor.pools[0].pool.restarts == 1


@ONCE
def test_process_crash_is_retried_while_attempts_remain(use_pools: Any, drain: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    use_pools(pools=pool("process", workers=1, max_attempts=2, backoff=0.01))
    crash = tasks.hard_exit.enqueue(9)
    # A clock a minute ahead: the retry's back-off has passed by the time it is looked for.
    drain(clock=lambda: timezone.now() + timedelta(minutes=1))
    crash.refresh()
    assert crash.status == TaskResultStatus.FAILED
    assert crash.attempts == 2
    assert [e.exception_class_path for e in crash.errors] == [
        "tandem.exceptions.WorkerCrashed",
        "tandem.exceptions.WorkerCrashed",
    ]


@ONCE
def test_process_pool_recycles_after_max_tasks_per_worker(use_pools: Any, drain: Any) -> None:
    use_pools(pools=pool("process", workers=1, max_tasks_per_worker=2))
    results = [tasks.where.enqueue() for _ in range(5)]
    supervisor = drain()
    pids = []
    for result in results:
        result.refresh()
        pids.append(result.return_value["pid"])
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[1] != pids[2] != pids[4]
    assert supervisor.pools[0].pool.recycled >= 2


@ONCE
@pytest.mark.parametrize("executor", EXECUTORS)
def test_exception_escaping_the_runner_replaces_the_worker(
    executor: str, use_pools: Any, drain: Any
) -> None:
    use_pools(pools=pool(executor, workers=1))
    poisoned = tasks.poison_receiver.enqueue()
    victim = tasks.where.enqueue()
    after = tasks.where.enqueue()
    supervisor = drain()
    for result in (poisoned, victim, after):
        result.refresh()
    assert poisoned.status == TaskResultStatus.SUCCESSFUL
    assert victim.status == TaskResultStatus.FAILED
    assert "a task_started receiver failed" in victim.errors[-1].traceback
    assert after.status == TaskResultStatus.SUCCESSFUL
    # Thread and subinterpreter: the worker is replaced. Process: the child reports the escape
    # ("crashed", with the failed outcome) and ends; a fresh child replaces it.
    assert supervisor.pools[0].pool.restarts == 1


def test_a_module_refused_by_subinterpreters_runs_in_the_process_pool(
    use_pools: Any, drain: Any, unfriendly: Any
) -> None:
    use_pools(pools=pool("process", workers=1))
    result = unfriendly.uses_curses.enqueue()
    drain()
    result.refresh()
    assert result.return_value == "curses imported"


def test_subinterpreter_executor_on_old_python_is_a_check_error(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from tandem.conf import parse_options

    if sys.version_info >= (3, 14):
        options = parse_options("default", {"OPTIONS": {"executor": "subinterpreter"}}, frozenset())
        assert options.executor == "subinterpreter"
        assert parse_options("default", {}, frozenset()).executor == "subinterpreter"
    else:
        with pytest.raises(ImproperlyConfigured, match=r"needs Python >= 3\.14"):
            parse_options("default", {"OPTIONS": {"executor": "subinterpreter"}}, frozenset())
        assert parse_options("default", {}, frozenset()).executor == "thread"


def test_default_executor_is_the_best_available_with_a_notice_on_fallback(
    use_pools: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tandem.worker.supervisor import Supervisor

    use_pools()  # no "executor" anywhere: the default applies
    supervisor = Supervisor(burst=True, listen=False)
    executors = {s.config.executor for s in supervisor.pools}
    if sys.version_info >= (3, 14):
        # MariaDB's driver cannot load in a subinterpreter: threads are its best.
        assert executors == {"thread" if settings.DB_KIND == "mariadb" else "subinterpreter"}
        return
    assert executors == {"thread"}
    with caplog.at_level("INFO", logger="tandem.worker"):
        supervisor.run()
    assert "no subinterpreters with their own GIL (3.14+): the pools run on threads" in caplog.text


@pytest.mark.parametrize("executor", EXECUTORS)
def test_module_state_isolation(executor: str, use_pools: Any, drain: Any) -> None:
    """Threads share this interpreter's module state; subinterpreters and processes do not."""
    tasks._COUNTER["value"] = 0
    use_pools(pools=pool(executor, workers=1))
    results = [tasks.bump_module_counter.enqueue() for _ in range(2)]
    drain()
    values = []
    for result in results:
        result.refresh()
        values.append(result.return_value)
    assert values == [1, 2]  # one worker, its own state kept between tasks
    assert tasks._COUNTER["value"] == (2 if executor == "thread" else 0)


def test_restarts_are_visible_in_the_worker_registry(use_pools: Any) -> None:
    import time

    from tandem.models import WorkerRecord
    from tandem.worker.supervisor import Supervisor

    use_pools(pools=pool("process", workers=1))
    crash = tasks.hard_exit.enqueue(3)
    supervisor = Supervisor(listen=False)
    deadline = time.monotonic() + 30
    while supervisor.settled < 1:
        assert time.monotonic() < deadline, "the crash was never settled"
        supervisor.step()
        time.sleep(0.02)
    supervisor._heartbeat(supervisor.clock())
    record = WorkerRecord.objects.get(id=supervisor.worker_id)
    assert record.pools["default"]["restarts"] == 1
    assert record.pools["default"]["executor"] == "process"
    supervisor.request_stop()
    supervisor.run()
    crash.refresh()
    assert crash.errors[-1].exception_class_path == "tandem.exceptions.WorkerCrashed"


@ONCE
@needs_subinterpreters
def test_interpreter_stuck_in_a_c_call_is_retired_and_replaced(use_pools: Any, drain: Any) -> None:
    """A task that does not return from its watchdog's TaskTimeout (as a blocking C call would
    not): the interpreter is retired, never reused.

    The task is ``pool_tasks.stuck`` (timeout 5 s, it swallows the TaskTimeout), not a plain
    ``time.sleep`` under a 0.3 s timeout: on a loaded CI machine the watchdog fired before the
    task reached its sleep, and the task ended as an ordinary interrupted one."""
    import threading

    from tests.support.pool_tasks import stuck as stuck_task

    use_pools(pools=pool("subinterpreter", workers=1))
    stuck = stuck_task.enqueue(10)  # past its 5 s timeout and the 2 s grace that follows
    after = tasks.where_unhurried.enqueue()
    supervisor = drain()
    stuck.refresh()
    after.refresh()
    assert stuck.status == TaskResultStatus.FAILED
    assert stuck.errors[-1].exception_class_path == "tandem.exceptions.TaskTimeout"
    assert "retired and replaced" in stuck.errors[-1].traceback
    assert after.status == TaskResultStatus.SUCCESSFUL
    assert supervisor.pools[0].pool.restarts == 1
    # Let the retired interpreter's thread finish its sleep and close it before the test ends.
    for thread in threading.enumerate():
        if thread.name.startswith("tandem-default-subinterpreter"):
            thread.join(10)


@ONCE
@pytest.mark.skipif(sys.platform != "linux", reason="per-thread scheduling class is Linux's")
@pytest.mark.parametrize("executor", PARALLEL)
def test_parallel_task_workers_run_at_lower_priority(
    executor: str, use_pools: Any, drain: Any
) -> None:
    """Task workers run in the idle scheduling class (per thread): HTTP threads win the cores."""
    use_pools(pools=pool(executor, workers=1))
    result = tasks.scheduling_class.enqueue()
    drain()
    result.refresh()
    assert result.return_value is True
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # this thread (the web side's) is untouched

"""Executors that survive real projects: a subinterpreter pool first proves that a worker can set
Django up and import the pool's task modules, and falls back to processes when it cannot; a task
refused by its interpreter's imports is run on the pool's process executor instead of failing."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from tandem.worker.pools.startup import StartupFailure, notice, refused_module, task_modules
from tests import tasks
from tests.support.pools import needs_subinterpreters, pool

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = "module _curses does not support loading in subinterpreters"


def test_refused_module_is_read_from_the_error() -> None:
    assert refused_module(f"ImportError: {REFUSED}") == "_curses"
    assert refused_module("ImportError: No module named 'x'") is None


def test_the_notice_names_the_module_and_the_setting_that_silences_it() -> None:
    from tandem.conf import parse_options

    config = parse_options("default", {"OPTIONS": {"pools": pool("thread")}}, frozenset())
    failure = StartupFailure(
        executor="subinterpreter", stage="setting Django up", error=f"ImportError: {REFUSED}"
    )
    message = notice("default", config.pools[0], [failure], "process")
    assert "the module '_curses' cannot load in a subinterpreter" in message
    assert 'Set "executor": "process" for this pool' in message
    assert "TASKS['default']['OPTIONS']['pools']['default']['executor']" in message


def test_task_modules_are_those_of_the_pool_queues(unfriendly: ModuleType) -> None:
    from tandem.conf import parse_options

    pools = {"a": {"queues": ["default"]}, "b": {"queues": ["critical", "exports"]}}
    options = parse_options("default", {"OPTIONS": {"pools": pools}}, frozenset())
    first, second = options.pools
    assert "tests.tasks" in task_modules(first, "default")
    assert "tests.subinterpreter_unfriendly" in task_modules(first, "default")
    assert task_modules(first, "other") == []
    # tests.tasks has a task on "critical"; the unfriendly module has none there
    assert task_modules(second, "default") == ["tests.tasks"]


@needs_subinterpreters
def test_a_pool_whose_interpreter_cannot_import_its_tasks_runs_on_processes(
    use_pools: Any, drain: Any, unfriendly: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    result = unfriendly.uses_curses.enqueue()
    placed = tasks.where.enqueue()
    with caplog.at_level("WARNING", logger="tandem.worker"):
        supervisor = drain()
    result.refresh()
    placed.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert result.return_value == "curses imported"
    assert placed.return_value["pid"] != os.getpid()  # in a child process
    notices = [r.getMessage() for r in caplog.records if "instead of subinterpreter" in r.message]
    assert len(notices) == 1
    assert "the module '_curses' cannot load in a subinterpreter" in notices[0]
    assert "importing task module 'tests.subinterpreter_unfriendly'" in notices[0]
    assert '"executor": "process"' in notices[0]
    state = supervisor.pool_states()["default"]
    assert state["executor"] == "process"
    assert state["configured_executor"] == "subinterpreter"
    assert REFUSED in str(state["startup_error"])
    assert state["failing"] is None


@needs_subinterpreters
def test_a_pool_that_imports_fine_stays_on_subinterpreters(
    use_pools: Any, drain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    placed = tasks.where.enqueue()
    with caplog.at_level("WARNING", logger="tandem.worker"):
        supervisor = drain()
    placed.refresh()
    assert placed.return_value["pid"] == os.getpid()
    assert placed.return_value["interpreter"] != 0
    state = supervisor.pool_states()["default"]
    assert (state["executor"], state["startup_error"]) == ("subinterpreter", None)
    assert not [r for r in caplog.records if "instead of" in r.message]


@needs_subinterpreters
def test_a_task_refused_by_its_interpreter_runs_on_the_process_executor(
    use_pools: Any, drain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    first = tasks.where_curses_loads.enqueue()
    second = tasks.where_curses_loads.enqueue()
    ordinary = tasks.where.enqueue()
    with caplog.at_level("WARNING", logger="tandem.worker"):
        supervisor = drain()
    for result in (first, second, ordinary):
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert first.return_value["pid"] != os.getpid()
    assert second.return_value["pid"] != os.getpid()
    assert ordinary.return_value["interpreter"] != 0  # the pool itself stays on interpreters
    assert first.attempts == second.attempts == 1  # not a retry: the same attempt, elsewhere
    notices = [
        r.getMessage() for r in caplog.records if "cannot load in a subinterpreter" in r.message
    ]
    assert len(notices) == 1
    assert "tests.tasks.where_curses_loads needs the module '_curses'" in notices[0]
    state = supervisor.pool_states()["default"]
    assert state["executor"] == "subinterpreter"
    assert (state["fallback"], state["fallback_tasks"]) == ("process", 2)


@needs_subinterpreters
def test_where_no_worker_can_set_django_up_the_pool_runs_on_threads(
    use_pools: Any, drain: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Workers set Django up from DJANGO_SETTINGS_MODULE; this process already has its settings.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.no_such_settings")
    use_pools(pools=pool("subinterpreter", workers=1))
    placed = tasks.where.enqueue()
    with caplog.at_level("WARNING", logger="tandem.worker"):
        supervisor = drain()
    placed.refresh()
    assert placed.status == TaskResultStatus.SUCCESSFUL, placed.errors
    assert placed.return_value == {"pid": os.getpid(), "interpreter": 0}
    (message,) = [r.getMessage() for r in caplog.records if "instead of" in r.message]
    assert "runs on the thread executor instead of subinterpreter" in message
    assert "a subinterpreter worker failed setting Django up: ModuleNotFoundError" in message
    assert "a process worker failed setting Django up: ModuleNotFoundError" in message
    assert 'Set "executor": "thread" for this pool' in message
    assert supervisor.pool_states()["default"]["executor"] == "thread"


def test_a_process_pool_whose_children_cannot_start_is_failing(
    use_pools: Any, drain: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.no_such_settings")
    use_pools(pools=pool("process", workers=1))
    result = tasks.where.enqueue()
    supervisor = drain(max_tasks=1)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    error = result.errors[-1]
    assert error.exception_class_path == "tandem.exceptions.WorkerCrashed"
    assert "the worker process could not start: a process worker failed setting Django up" in (
        error.traceback
    )
    assert "No module named 'tests.no_such_settings'" in error.traceback
    failing = supervisor.pool_states()["default"]["failing"]
    assert "a process worker failed setting Django up: ModuleNotFoundError" in str(failing)


@needs_subinterpreters
def test_a_pool_starts_its_interpreters_on_demand(
    use_pools: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A started pool holds one interpreter, the one that proved it; the supervisor claims one
    task beyond the ready and starting workers, and a task that finds every worker busy starts
    one more interpreter (off the caller's thread, held here): one per waiting task, side by
    side, up to ``workers``."""
    import threading

    from tandem.worker.pools import subinterpreters
    from tandem.worker.supervisor import Supervisor
    from tests.support.processes import wait_until

    release = threading.Event()
    set_up = subinterpreters._Interpreter._set_up
    held_on: list[str] = []

    def held(worker: Any, environment: Any, modules: Any, lowered: bool = False) -> None:
        if lowered:  # a pool's worker after the proof: in the idle class, off the caller's thread
            held_on.append(threading.current_thread().name)
            release.wait(120)
        set_up(worker, environment, modules, lowered)

    monkeypatch.setattr(subinterpreters._Interpreter, "_set_up", held)
    use_pools(pools=pool("subinterpreter", workers=3, prefetch=0))  # (no claims ahead)
    results = [tasks.where.enqueue() for _ in range(4)]
    supervisor = Supervisor(burst=True, listen=False)
    try:
        supervisor.start()
        state = supervisor.pools[0]
        live = state.pool._live_slots  # type: ignore[attr-defined]
        assert len(live()) == 1 and state.pool.ready_workers() == 2
        assert supervisor.step() == 2  # one for the ready worker, one starts another
        wait_until(lambda: len(held_on) == 1, "a second interpreter to start")
        assert state.pool.ready_workers() == 3  # one ready, one starting, one more may wait
        wait_until(lambda: supervisor.step() >= 0 and supervisor.settled == 4, "every task")
        # The ready interpreter ran every task (the others are held); each started one was
        # started for a waiting task (a third only if a task waited again: timing).
        assert len(live()) == 1 + len(held_on) <= 3
        release.set()
        wait_until(
            lambda: all(slot.handle is not None for slot in live()), "the started to be ready"
        )
    finally:
        release.set()
        supervisor.request_stop()
        supervisor.close()
    interpreters = set()
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
        interpreters.add(result.return_value["interpreter"])
    assert len(interpreters) == 1 and 0 not in interpreters  # all on the one ready interpreter
    assert all(name.endswith("-setup") for name in held_on), held_on


@needs_subinterpreters
def test_tasks_waiting_together_start_their_interpreters_side_by_side(
    use_pools: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks that wait while every interpreter is busy each start one, at once: the second and
    the third start side by side (both held here), not the third after the second is ready."""
    import threading

    from tandem.worker.pools import subinterpreters
    from tandem.worker.supervisor import Supervisor
    from tests.support.processes import wait_until

    release = threading.Event()
    set_up = subinterpreters._Interpreter._set_up
    held_on: list[str] = []

    def held(worker: Any, environment: Any, modules: Any, lowered: bool = False) -> None:
        if lowered:
            held_on.append(threading.current_thread().name)
            release.wait(120)
        set_up(worker, environment, modules, lowered)

    monkeypatch.setattr(subinterpreters._Interpreter, "_set_up", held)
    use_pools(pools=pool("subinterpreter", workers=3, prefetch=0))
    # Long enough that the ready interpreter is still busy with the first when the others wait.
    results = [tasks.sleep.enqueue(4.0) for _ in range(3)]
    supervisor = Supervisor(burst=False, listen=False)
    try:
        supervisor.start()
        state = supervisor.pools[0]
        live = state.pool._live_slots  # type: ignore[attr-defined]
        wait_until(lambda: supervisor.step() >= 0 and len(held_on) == 2, "two to start")
        assert len(live()) == 3 and state.pool.ready_workers() == 3  # never past ``workers``
        release.set()
        wait_until(lambda: supervisor.step() >= 0 and supervisor.settled == 3, "every task")
    finally:
        release.set()
        supervisor.request_stop()
        supervisor.close()
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors


@needs_subinterpreters
def test_an_idle_pool_closes_its_interpreters_but_one(
    use_pools: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tasks at once start a second interpreter; idle for ``idle_close``, the pool closes
    it and keeps one ready, which takes the next task at once."""
    from tandem.worker.supervisor import Supervisor
    from tests.support.processes import wait_until

    use_pools(pools=pool("subinterpreter", workers=2, prefetch=0, idle_close=0.2))
    first = [tasks.sleep.enqueue(1.0) for _ in range(2)]
    supervisor = Supervisor(burst=False, listen=False)
    try:
        supervisor.start()
        state = supervisor.pools[0]
        live = state.pool._live_slots  # type: ignore[attr-defined]
        wait_until(lambda: supervisor.step() >= 0 and supervisor.settled == 2, "both tasks")
        assert state.pool.restarts == 0
        wait_until(lambda: len(live()) == 1, "the pool to shrink to one interpreter")
        assert state.pool.ready_workers() == 2 and state.pool.restarts == 0
        later = tasks.where.enqueue()
        wait_until(lambda: supervisor.step() >= 0 and supervisor.settled == 3, "the next task")
        assert len(live()) == 1
    finally:
        supervisor.request_stop()
        supervisor.close()
    for result in [*first, later]:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert later.return_value["interpreter"] != 0


@needs_subinterpreters
def test_an_idle_pool_with_idle_keep_zero_closes_every_interpreter(use_pools: Any) -> None:
    """``idle_keep`` 0: idle for ``idle_close``, the pool closes its last interpreter too
    (an idle pool holds none), and the next task starts a fresh one and runs there."""
    from tandem.worker.supervisor import Supervisor
    from tests.support.processes import wait_until

    use_pools(pools=pool("subinterpreter", workers=2, prefetch=0, idle_close=0.2, idle_keep=0))
    first = tasks.where.enqueue()
    supervisor = Supervisor(burst=False, listen=False)
    try:
        supervisor.start()
        state = supervisor.pools[0]
        live = state.pool._live_slots  # type: ignore[attr-defined]
        wait_until(lambda: supervisor.step() >= 0 and supervisor.settled == 1, "the first task")
        wait_until(lambda: len(live()) == 0, "the pool to close its last interpreter")
        assert state.pool.ready_workers() == 1 and state.pool.restarts == 0
        later = tasks.where.enqueue()
        wait_until(lambda: supervisor.step() >= 0 and supervisor.settled == 2, "the next task")
    finally:
        supervisor.request_stop()
        supervisor.close()
    for result in (first, later):
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert later.return_value["interpreter"] not in (0, first.return_value["interpreter"])


@needs_subinterpreters
def test_without_idle_close_every_interpreter_starts_with_the_pool_and_stays(
    use_pools: Any,
) -> None:
    """``idle_close`` None: the pool starts all its workers' interpreters at once, claims only
    for those set up, and closes none however long they idle."""
    import time

    from tandem.worker.supervisor import Supervisor
    from tests.support.processes import wait_until

    use_pools(pools=pool("subinterpreter", workers=2, prefetch=0, idle_close=None))
    supervisor = Supervisor(burst=False, listen=False)
    try:
        supervisor.start()
        state = supervisor.pools[0]
        live = state.pool._live_slots  # type: ignore[attr-defined]
        assert len(live()) == 2
        wait_until(lambda: state.pool.ready_workers() == 2, "both interpreters to be set up")
        time.sleep(0.5)  # longer than the idle_close the test above shrinks a pool with
        assert len(live()) == 2 and state.pool.ready_workers() == 2
        result = tasks.where.enqueue()
        wait_until(lambda: supervisor.step() >= 0 and supervisor.settled == 1, "the task")
        assert len(live()) == 2
    finally:
        supervisor.request_stop()
        supervisor.close()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors

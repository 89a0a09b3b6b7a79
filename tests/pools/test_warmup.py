"""The worker interpreter ``tandem serve``/``tandem worker`` start ahead (``warmup``): set up while
the main interpreter still parses, checks and builds, adopted by the pool's start-up proof as its
first worker, and closed when no pool takes it."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from tandem.worker.pools import runner, warmup
from tests import tasks
from tests.support.pools import needs_subinterpreters, pool

pytestmark = [pytest.mark.django_db(transaction=True), needs_subinterpreters]


@pytest.fixture(autouse=True)
def nothing_left_waiting() -> Iterator[None]:
    yield
    warmup.discard()


def open_interpreters() -> set[int]:
    from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

    return {int(i.id) for i in interpreters.list_all()}


def started_ahead() -> Any:
    """The interpreter ``begin`` started, once set up."""
    warming = warmup._pending
    assert warming is not None
    worker = warming.result()
    assert worker is not None and worker.setup_error is None
    return worker


def test_the_pool_takes_the_interpreter_started_ahead_as_its_first_worker(
    use_pools: Any, drain: Any
) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    warmup.begin(runner.worker_environment())
    ahead = int(started_ahead().interp.id)
    placed = tasks.where.enqueue()
    drain()
    placed.refresh()
    assert placed.status == TaskResultStatus.SUCCESSFUL, placed.errors
    assert placed.return_value["interpreter"] == ahead  # its task modules imported there
    assert not warmup.pending()
    assert ahead not in open_interpreters()  # closed with the pool


def test_an_interpreter_set_up_with_another_environment_is_closed_not_taken(
    use_pools: Any, drain: Any
) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    sys_path, environ, databases = runner.worker_environment()
    warmup.begin((sys_path, environ, {**databases, "other": "elsewhere.sqlite3"}))
    ahead = int(started_ahead().interp.id)
    placed = tasks.where.enqueue()
    drain()
    placed.refresh()
    assert placed.status == TaskResultStatus.SUCCESSFUL, placed.errors
    assert placed.return_value["interpreter"] not in (0, ahead)
    assert ahead not in open_interpreters()


def test_an_interpreter_no_pool_takes_is_closed_once_the_executors_are_chosen(
    use_pools: Any,
) -> None:
    from tandem.worker.supervisor import Supervisor

    use_pools(pools=pool("thread", workers=1))
    warmup.begin(runner.worker_environment())
    ahead = int(started_ahead().interp.id)
    supervisor = Supervisor(burst=True, listen=False)
    try:
        supervisor.choose_executors()
        assert not warmup.pending()
        assert ahead not in open_interpreters()
    finally:
        supervisor.close()


def test_discarding_an_interpreter_still_setting_up_does_not_wait_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool's own start goes on; the interpreter is closed when its set-up ends."""
    import threading

    from tandem.worker.pools import subinterpreters

    release = threading.Event()
    created: list[Any] = []
    wrap = subinterpreters._Interpreter.__init__

    def held(worker: Any, *args: Any, **kwargs: Any) -> None:
        release.wait(120)  # (Django is set up in it by now: only the wrapping is held)
        wrap(worker, *args, **kwargs)
        created.append(worker)

    monkeypatch.setattr(subinterpreters._Interpreter, "__init__", held)
    warmup.begin(runner.worker_environment())
    warming = warmup._pending
    assert warming is not None
    warmup.discard()  # returns while the set-up is held
    assert not warmup.pending() and warming.thread.is_alive()
    release.set()
    warming.thread.join(120)
    (worker,) = created
    assert int(worker.interp.id) not in open_interpreters()


def test_task_modules_refused_by_the_interpreter_started_ahead_send_the_pool_to_processes(
    use_pools: Any, drain: Any, unfriendly: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """The proof imports the pool's task modules in the adopted interpreter: a refusal there
    is the proof's failure, as in an interpreter the proof starts itself."""
    use_pools(pools=pool("subinterpreter", workers=1))
    warmup.begin(runner.worker_environment())
    ahead = int(started_ahead().interp.id)
    result = unfriendly.uses_curses.enqueue()
    with caplog.at_level("WARNING", logger="tandem.worker"):
        supervisor = drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    (message,) = [r.getMessage() for r in caplog.records if "instead of" in r.message]
    assert "importing task module 'tests.subinterpreter_unfriendly'" in message
    assert supervisor.pool_states()["default"]["executor"] == "process"
    assert ahead not in open_interpreters()


@pytest.mark.parametrize(
    ("args", "started"),
    [
        (["serve", "-w", "2"], True),
        (["worker", "--backend", "default"], True),
        (["--verbosity=2", "worker", "--backend=default"], True),
        (["-v", "2", "--settings", "tests.settings", "serve", "--queue", "status"], True),
        (["status", "--queue", "worker"], False),
        (["worker", "--backend", "no-such-backend"], False),  # the command says what is wrong
        (["status"], False),
        (["worker", "--help"], False),
        (["serve", "--supervise"], False),  # the parent runs no pool: its child starts one
        ([], False),
    ],
)
def test_the_command_starts_an_interpreter_ahead_only_to_run_a_subinterpreter_pool(
    use_pools: Any, args: list[str], started: bool
) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    assert warmup.begin_for_command(args) is started
    assert warmup.pending() is started


def test_a_store_that_blocks_subinterpreters_closes_what_the_command_started_ahead(
    use_pools: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command starts the interpreter before asking the store (whose code it would have to
    import first); a store that cannot be used from one closes it again."""
    from tandem.backends.database import DatabaseBackend

    monkeypatch.setattr(DatabaseBackend, "subinterpreter_blocker", lambda self: "its driver")
    begun = []
    begin = warmup.begin

    def spy(environment: Any) -> None:
        begin(environment)
        begun.append(warmup._pending)

    monkeypatch.setattr(warmup, "begin", spy)
    use_pools(pools={"default": {"queues": ["default", "critical", "exports"]}})
    assert warmup.begin_for_command(["worker"]) is False
    assert not warmup.pending()
    (warming,) = begun
    warming.thread.join(120)  # it closes the interpreter once set up
    assert warming.worker is not None
    assert int(warming.worker.interp.id) not in open_interpreters()


def test_an_interpreter_started_ahead_that_cannot_set_django_up_is_the_proofs_failure(
    use_pools: Any, drain: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.no_such_settings")
    use_pools(pools=pool("subinterpreter", workers=1))
    warmup.begin(runner.worker_environment())
    warming = warmup._pending
    assert warming is not None
    ahead = warming.result()
    assert ahead is not None and ahead.setup_error is not None
    placed = tasks.where.enqueue()
    with caplog.at_level("WARNING", logger="tandem.worker"):
        supervisor = drain()
    placed.refresh()
    assert placed.status == TaskResultStatus.SUCCESSFUL, placed.errors
    (message,) = [r.getMessage() for r in caplog.records if "instead of" in r.message]
    assert "a subinterpreter worker failed setting Django up: ModuleNotFoundError" in message
    assert supervisor.pool_states()["default"]["executor"] == "thread"
    assert int(ahead.interp.id) not in open_interpreters()


def test_the_command_starts_nothing_ahead_for_pools_on_threads_or_processes(
    use_pools: Any,
) -> None:
    use_pools(pools={**pool("thread"), "exports": {"queues": ["x"], "executor": "process"}})
    assert warmup.begin_for_command(["worker"]) is False
    assert not warmup.pending()

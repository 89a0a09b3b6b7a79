"""The warm-up interpreter started at ``import tandem`` (``early``), during ``django.setup()``:
only for a command line that runs a subinterpreter pool, set up exactly as ``warmup`` would set
one up, adopted by ``warmup.begin`` and closed when nothing adopts it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from tandem.worker.pools import early, runner, warmup
from tests import tasks
from tests.support.doubles import wait_for
from tests.support.pools import needs_subinterpreters, pool

pytestmark = [pytest.mark.django_db(transaction=True), needs_subinterpreters]


@pytest.fixture(autouse=True)
def nothing_left_waiting() -> Iterator[None]:
    yield
    early._discard()
    warmup.discard()


def open_interpreters() -> set[int]:
    from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

    return {int(i.id) for i in interpreters.list_all()}


@pytest.mark.parametrize(
    ("argv", "started"),
    [
        (["manage.py", "tandem", "serve", "-w", "2"], True),
        (["/x/django/__main__.py", "tandem", "worker", "--backend", "default"], True),
        (["manage.py", "tandem", "--verbosity=2", "worker", "--backend=default"], True),
        (["manage.py", "tandem", "-v", "2", "serve", "--queue", "status"], True),
        (["manage.py", "tandem", "status", "--queue", "worker"], False),
        (["manage.py", "tandem", "worker", "--backend", "no-such-backend"], False),
        (["manage.py", "tandem", "worker", "--help"], False),
        (["manage.py", "tandem", "serve", "--supervise"], False),  # its child starts one
        (["manage.py", "runserver"], False),
        (["manage.py", "migrate", "tandem", "worker"], False),
        (["pytest", "tests"], False),
        ([], False),
    ],
)
def test_it_starts_only_for_a_command_line_that_runs_a_subinterpreter_pool(
    use_pools: Any, argv: list[str], started: bool
) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    assert early.begin(argv) is started
    assert (early._started is not None) is started


@pytest.mark.parametrize(
    ("options", "started"),
    [
        ({}, True),  # the default executor
        ({"executor": "subinterpreter"}, True),
        ({"executor": "thread"}, False),
        ({"pools": pool("thread")}, False),
        ({"executor": "process", "pools": {"a": {}, "b": {"executor": "subinterpreter"}}}, True),
        ({"executor": "thread", "pools": {"a": {}, "b": {"executor": "process"}}}, False),
    ],
)
def test_it_reads_the_executor_from_the_settings_as_written(
    use_pools: Any, options: dict[str, Any], started: bool
) -> None:
    use_pools(**options)
    assert early.begin(["manage.py", "tandem", "worker"]) is started


def test_a_backend_that_is_not_tandems_starts_nothing(settings: Any) -> None:
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    assert early.begin(["manage.py", "tandem", "worker"]) is False


@pytest.mark.parametrize(
    ("engines", "started"),
    [
        (["django.db.backends.sqlite3"], True),
        (["django.db.backends.postgresql"], True),
        (["django.db.backends.mysql"], False),  # mysqlclient does not load in one
        (["django.db.backends.mysql", "django.db.backends.mysql"], False),
        (["django.db.backends.mysql", "django.db.backends.sqlite3"], True),  # the backend decides
    ],
)
def test_a_database_store_that_can_only_be_mysql_starts_nothing(
    engines: list[str], started: bool
) -> None:
    params = {"BACKEND": early.DATABASE_BACKEND}
    databases = {f"db{n}": {"ENGINE": engine} for n, engine in enumerate(engines)}
    assert early._runs_subinterpreters(params, databases) is started
    redis = {"BACKEND": "tandem.backends.redis.RedisBackend"}
    assert early._runs_subinterpreters(redis, databases) is True  # the tasks are not there


def test_its_environment_is_the_one_the_pools_give_their_workers(use_pools: Any) -> None:
    """``warmup`` adopts it only if equal: a difference would silently cost the head start."""
    use_pools(pools=pool("subinterpreter", workers=1))
    assert early._environment_for(["manage.py", "tandem", "worker"]) == runner.worker_environment()


def test_warmup_adopts_it_and_the_pool_runs_its_first_task_there(
    use_pools: Any, drain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    assert early.begin(["manage.py", "tandem", "worker"])
    begun = early._started
    assert begun is not None
    interp, error = begun.result()
    assert error is None
    with caplog.at_level("DEBUG", logger="tandem.worker"):
        warmup.begin(runner.worker_environment())
        warming = warmup._pending
        assert warming is not None
        worker = warming.result()
    assert early._started is None  # taken
    assert worker is not None and worker.setup_error is None
    assert int(worker.interp.id) == int(interp.id)
    assert "started during Django's set-up" in caplog.text
    placed = tasks.where.enqueue()
    drain()
    placed.refresh()
    assert placed.status == TaskResultStatus.SUCCESSFUL, placed.errors
    assert placed.return_value["interpreter"] == int(interp.id)
    assert int(interp.id) not in open_interpreters()  # closed with the pool


def test_one_set_up_with_another_environment_is_closed_and_warmup_makes_its_own(
    use_pools: Any,
) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    assert early.begin(["manage.py", "tandem", "worker"])
    begun = early._started
    assert begun is not None
    stale, _ = begun.result()
    sys_path, environ, databases = runner.worker_environment()
    warmup.begin(([*sys_path, "/elsewhere"], environ, databases))
    warming = warmup._pending
    assert warming is not None
    worker = warming.result()
    assert worker is not None and worker.setup_error is None
    assert int(worker.interp.id) != int(stale.id)
    assert int(stale.id) not in open_interpreters()


def test_a_set_up_that_fails_is_the_proofs_failure_to_report(
    use_pools: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.no_such_settings")
    use_pools(pools=pool("subinterpreter", workers=1))
    assert early.begin(["manage.py", "tandem", "worker"])
    warmup.begin(runner.worker_environment())
    warming = warmup._pending
    assert warming is not None
    worker = warming.result()
    assert worker is not None and worker.setup_error is not None
    assert "ModuleNotFoundError" in worker.setup_error.error
    worker.close()


def test_one_nothing_adopts_is_closed_at_exit(use_pools: Any) -> None:
    use_pools(pools=pool("subinterpreter", workers=1))
    assert early.begin(["manage.py", "tandem", "worker"])
    begun = early._started
    assert begun is not None
    interp, _ = begun.result()
    assert int(interp.id) in open_interpreters()
    early._discard()  # what ``atexit`` runs
    assert int(interp.id) not in open_interpreters()
    assert early._started is None


def test_the_environment_crosses_as_json_text_never_a_pickle() -> None:
    """A path for a database name arrives as its text; a name that is neither starts nothing."""
    made = early.Early((["/a"], {"DJANGO_SETTINGS_MODULE": "s"}, {"default": Path("/t/db")}))
    assert json.loads(made.text) == [["/a"], {"DJANGO_SETTINGS_MODULE": "s"}, {"default": "/t/db"}]
    assert not made.thread.is_alive()  # (only ``begin`` starts it)
    with pytest.raises(TypeError):
        early.Early(([], {}, {"default": object()}))


def test_one_the_command_never_adopts_is_closed_with_the_interpreters_nobody_took(
    use_pools: Any,
) -> None:
    """The settings as written said subinterpreters, the loaded backend did not (``warmup``
    never began): once the executors are chosen (``warmup.discard``), it is closed, not kept
    until exit."""
    use_pools(pools=pool("subinterpreter", workers=1))
    assert early.begin(["manage.py", "tandem", "worker"])
    begun = early._started
    assert begun is not None
    interp, _ = begun.result()
    assert int(interp.id) in open_interpreters()
    warmup.discard()
    assert early._started is None
    wait_for(lambda: int(interp.id) not in open_interpreters(), "the stray interpreter closed")

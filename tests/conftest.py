"""Shared fixtures. Tiers live in sub-folders; see tests/README.md."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings

from tandem.worker.supervisor import Supervisor
from tests.worker.harness import Harness

DB_KIND = settings.DB_KIND
IN_CI = bool(os.environ.get("CI"))


#: The run (``TANDEM_TEST_DB``) each of these markers confines a test to. Redis and whatever is
#: marked ``once`` do not depend on the SQL database, so they run once, in the SQLite run.
RUN_OF_MARKER = {"postgres": "postgres", "mariadb": "mariadb", "redis": "sqlite", "once": "sqlite"}

#: Tiers (folders, or single files) whose tests do not depend on the run's SQL database: the
#: settings and API units, the admin and dashboard pages, the browser, the embedding servers, real
#: applications (compat), the restarting parent, the HTTP side and the Redis store. They are
#: marked ``once`` here, so they run in the SQLite run only; everything else runs once per
#: database. Parameters that do not touch the SQL store (the memory twin, Redis) carry
#: ``once``/``redis`` marks where they are declared.
ONCE_TIERS = (
    "unit/",
    "web/",
    "browser/",
    "embedded/",
    "redis/",
    "compat/",
    "serve/test_supervise.py",
    "serve/test_http.py",
)
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
#: Tiers that each start many processes and thousands of tasks: under pytest-xdist each is one
#: group (its tests run one after another on one worker), so a run has at most one chaos and one
#: scale test going at a time, beside lighter tests.
HEAVY_TIERS = ("chaos/", "scale/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` belong to the PostgreSQL run, ``mariadb`` to the MariaDB run and
    ``redis`` or ``once`` to the SQLite run: in the other runs they are deselected (not skipped).

    In the PostgreSQL run a missing server is an error, never a skip.
    """
    selected, deselected = [], []
    for item in items:
        where = os.path.relpath(str(item.path), TESTS_DIR)
        if where.startswith(ONCE_TIERS):
            item.add_marker(pytest.mark.once)
        if where.startswith(HEAVY_TIERS):
            item.add_marker(pytest.mark.xdist_group(where.split("/", 1)[0]))
        runs = {RUN_OF_MARKER[m.name] for m in item.iter_markers() if m.name in RUN_OF_MARKER}
        (deselected if runs and DB_KIND not in runs else selected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """After pytest-timeout cut a test short, close this process's database connections: the
    timeout may have landed mid-query, and a connection left that way fails every later test of
    this worker ("another command is already in progress"). Django reconnects on next use."""
    if call.excinfo is None or "Timeout (>" not in str(call.excinfo.value):
        return
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        try:
            if raw is not None and hasattr(raw, "cancel"):
                raw.cancel()  # psycopg: the server stops the query (it would hold the database)
            connection.close()
        except Exception:  # already broken: it is gone either way
            connection.connection = None


@pytest.fixture
def harness() -> Iterator[Harness]:
    """In-process supervisors for one test; no thread or connection outlives it."""
    h = Harness()
    try:
        yield h
    finally:
        h.cleanup()


@pytest.fixture
def drain() -> Callable[..., Supervisor]:
    """Run a burst supervisor in this process until the queues are empty; return it."""

    def run(**kwargs: object) -> Supervisor:
        kwargs.setdefault("burst", True)
        kwargs.setdefault("listen", False)
        supervisor = Supervisor(**kwargs)  # type: ignore[arg-type]
        supervisor.run()
        return supervisor

    return run


@pytest.fixture
def tandem_settings(settings: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """Replace TASKS['default']['OPTIONS'] for one test (backends are rebuilt by Django)."""

    def apply(**options: object) -> None:
        tasks = {k: dict(v) for k, v in settings.TASKS.items()}  # type: ignore[attr-defined]
        tasks["default"]["OPTIONS"] = {**tasks["default"].get("OPTIONS", {}), **options}
        settings.TASKS = tasks  # type: ignore[attr-defined]

    yield apply


@pytest.fixture(scope="session", autouse=True)
def _free_the_test_database(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """PostgreSQL refuses to drop the test database while any session is connected to it: at the
    end of the run, end the sessions still there (an abandoned subinterpreter still in its task,
    a thread a failed test left behind) and say which, instead of failing the teardown."""
    yield
    if DB_KIND != "postgres":
        return
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, application_name, state FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        left = cursor.fetchall()
        for pid, application, state in left:
            print(f"\nending a session left on the test database: pid {pid} {application} {state}")
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

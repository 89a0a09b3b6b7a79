"""Shared fixtures. Tiers live in sub-folders; see tests/README.md."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings

from tandem.worker.supervisor import Supervisor
from tests.support.harness import Harness

DB_KIND = settings.DB_KIND
IN_CI = bool(os.environ.get("CI"))
#: Which part of the SQLite run this process runs (``TANDEM_TEST_PART``, set by ``scripts/test``
#: when the database runs go side by side): ``once`` only the tests that run once (marked ``once``
#: or ``redis``), ``db`` only the others, unset both. The two parts then run as two streams, so
#: the SQLite run is no longer the long pole.
TEST_PART = os.environ.get("TANDEM_TEST_PART", "")


#: The run (``TANDEM_TEST_DB``) each of these markers confines a test to. Redis and whatever is
#: marked ``once`` do not depend on the SQL database, so they run once, in the SQLite run.
RUN_OF_MARKER = {"postgres": "postgres", "mariadb": "mariadb", "redis": "sqlite", "once": "sqlite"}

#: Tiers (folders, or single files) whose tests do not depend on the run's SQL database: the
#: settings and API units, the admin and dashboard pages, the browser, the embedding servers, real
#: applications (compat), the one-process server (``serve``: its HTTP side, signals, grace, the
#: restarting parent; what it writes is the broker's, tested per database by the contract, worker
#: and chaos tiers, and chaos runs ``serve`` on every database), the pools' start-up faults and
#: the Redis store. They are marked ``once`` here, so they run in the SQLite run only;
#: everything else runs once per database. Parameters that do not touch the SQL store (the
#: memory twin, Redis) carry ``once``/``redis`` marks where they are declared.
ONCE_TIERS = (
    "unit/",
    "web/",
    "browser/",
    "embedded/",
    "redis/",
    "compat/",
    "serve/",
    "faults/test_pools.py",
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
    if TEST_PART not in ("", "once", "db"):
        raise pytest.UsageError(
            f"TANDEM_TEST_PART must be 'once', 'db' or unset, got {TEST_PART!r}."
        )
    selected, deselected = [], []
    for item in items:
        where = os.path.relpath(str(item.path), TESTS_DIR)
        if where.startswith(ONCE_TIERS):
            item.add_marker(pytest.mark.once)
        if where.startswith(HEAVY_TIERS):
            item.add_marker(pytest.mark.xdist_group(where.split("/", 1)[0]))
        runs = {RUN_OF_MARKER[m.name] for m in item.iter_markers() if m.name in RUN_OF_MARKER}
        ran_once = any(m.name in ("once", "redis") for m in item.iter_markers())
        wrong_part = (TEST_PART == "once" and not ran_once) or (TEST_PART == "db" and ran_once)
        (deselected if (runs and DB_KIND not in runs) or wrong_part else selected).append(item)
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


def end_foreign_sessions() -> list[str]:
    """End every other session on the test database (PostgreSQL, MariaDB) and describe each.

    PostgreSQL refuses to drop a database while a session is connected to it, and MariaDB's
    ``DROP DATABASE`` waits, without end, for a session still in a transaction on it (its
    metadata lock); a session left behind (an abandoned subinterpreter still in its task, a
    thread a failed test left, a connection a proxy kept open) must not hang or fail the run."""
    from django.db import connection

    with connection.cursor() as cursor:
        if DB_KIND == "postgres":
            cursor.execute(
                "SELECT pid, application_name, state FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            left = cursor.fetchall()
            for pid, *_ in left:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        elif DB_KIND == "mariadb":
            cursor.execute(
                "SELECT id, command, time FROM information_schema.PROCESSLIST "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
            left = cursor.fetchall()
            for session, *_ in left:
                with contextlib.suppress(Exception):  # it may have ended meanwhile
                    cursor.execute(f"KILL {int(session)}")
        else:
            return []
    return [" ".join(map(str, row)) for row in left]


#: Tiers whose worker processes use the run's database (and may be killed, or cut off by a proxy).
_SESSION_LEAVING_TIERS = ("faults", "chaos", "scale", "process")


#: Sessions ended after a test, listed at the end of the run.
_ENDED_SESSIONS: list[str] = []


@pytest.fixture(autouse=True)
def _no_session_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test of a tier that starts worker processes, end any session they left on the
    test database (with its transaction and locks), so the next test does not wait on it."""
    yield
    tier = request.node.path.parent.name
    if DB_KIND == "sqlite" or tier not in _SESSION_LEAVING_TIERS:
        return
    with request.getfixturevalue("django_db_blocker").unblock():
        ended = end_foreign_sessions()
    _ENDED_SESSIONS.extend(f"{request.node.nodeid}: {session}" for session in ended)


#: How each test that failed and ran again (pytest-rerunfailures, CI) failed the first time.
_RERUNS: list[tuple[str, str]] = []
RERUN_LINES = 40


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.outcome == "rerun":
        text = report.longreprtext.strip().splitlines()
        _RERUNS.append((report.nodeid, "\n".join(text[-RERUN_LINES:])))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _ENDED_SESSIONS:
        terminalreporter.section("sessions left on the test database (ended)")
        for line in _ENDED_SESSIONS:
            terminalreporter.write_line(line)
    if _RERUNS:
        # A pass on the rerun must not hide why the first run failed.
        terminalreporter.section("failed, then ran again (the first failure's last lines)")
        for nodeid, text in _RERUNS:
            terminalreporter.write_line(f"--- {nodeid}")
            terminalreporter.write_line(text)


@pytest.fixture(scope="session", autouse=True)
def _free_the_test_database(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """At the end of the run, end the sessions still on the test database and say which,
    instead of failing (PostgreSQL) or hanging (MariaDB) the teardown that drops it."""
    yield
    with django_db_blocker.unblock():
        for session in end_foreign_sessions():
            print(f"\nended a session left on the test database: {session}")

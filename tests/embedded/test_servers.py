"""Each real server runs the demo with tandem embedded: a form post enqueues, the task runs.

uvicorn, hypercorn and granian serve ``demosite.asgi_tandem`` (the lifespan wrapper); gunicorn
serves ``demosite.wsgi`` with ``demo/gunicorn.conf.py`` (the worker hooks). Every server gets its
own SQLite file, migrated once per module. After the first task succeeded, a second one is
enqueued and the server gets SIGTERM while it runs: it must be drained (SUCCESSFUL), the server
must exit in bounded time, and nothing may stay RUNNING or registered.

The demo runs its default executor: subinterpreter pools on Python >= 3.14, threads before.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tandem.conf import DEFAULT_EXECUTOR
from tests.support import free_port, request

DEMO = Path(__file__).resolve().parents[2] / "demo"
DEADLINE = 20.0
WELCOME = "shop.tasks.send_welcome_email"

pytestmark = pytest.mark.process


@dataclass(frozen=True)
class Server:
    name: str
    argv: Callable[[int], list[str]]
    exit_codes: tuple[int, ...] = (0,)
    supervisors: int = 1  # one per server worker process
    in_server_process: bool = False  # whether the server runs its app in the process we start


SERVERS = [
    Server(
        "uvicorn",
        lambda port: [
            "-m",
            "uvicorn",
            "demosite.asgi_tandem:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        # uvicorn re-raises the SIGTERM it captured once its shutdown is complete.
        exit_codes=(0, -signal.SIGTERM),
        in_server_process=True,
    ),
    Server(
        "hypercorn",
        lambda port: [
            "-m",
            "hypercorn",
            "--bind",
            f"127.0.0.1:{port}",
            "demosite.asgi_tandem:application",
        ],
    ),
    Server(
        "granian",
        lambda port: [
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "demosite.asgi_tandem:application",
        ],
    ),
    Server(
        "gunicorn",
        lambda port: ["-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        supervisors=2,  # demo/gunicorn.conf.py: workers = 2
    ),
]


def demo_env(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="demosite.settings",
        TANDEM_DEMO_DB=str(database),
        PYTHONUNBUFFERED="1",
        # gunicorn >= 25.1 opens a control socket in $XDG_RUNTIME_DIR (else ~/.gunicorn).
        XDG_RUNTIME_DIR=str(database.parent),
    )
    return env


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("template") / "demo.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=DEMO,
        env=demo_env(database),
        check=True,
        timeout=60,
    )
    return database


@pytest.fixture
def database(migrated: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "demo.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{migrated}{suffix}")
        if source.exists():
            shutil.copy(source, f"{copy}{suffix}")
    return copy


def rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(database, timeout=10)) as connection:
        return connection.execute(sql).fetchall()


def statuses(database: Path) -> list[str]:
    return [
        str(status)
        for (status,) in rows(
            database,
            f"SELECT status FROM tandem_taskrecord WHERE task_path = '{WELCOME}' "
            "ORDER BY enqueued_at",
        )
    ]


class Running:
    """A server subprocess whose output goes to a file (reading it never blocks the server)."""

    def __init__(self, server: Server, port: int, env: dict[str, str], log: Path) -> None:
        self.server = server
        self.port = port
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, *server.argv(port)],
                cwd=DEMO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return f"--- {self.server.name} output ---\n{self.log.read_text(errors='replace')}"

    def check_alive(self, what: str) -> None:
        if self.process.poll() is not None:
            pytest.fail(
                f"{self.server.name} exited ({self.process.returncode}) while waiting for "
                f"{what}\n{self.output()}"
            )

    def wait_until(self, predicate: Callable[[], bool], what: str) -> float:
        started = time.monotonic()
        while not predicate():
            self.check_alive(what)
            if time.monotonic() - started > DEADLINE:
                pytest.fail(f"no {what} within {DEADLINE:g}s\n{self.output()}")
            time.sleep(0.05)
        return time.monotonic() - started

    def serving(self) -> bool:
        try:
            return request(self.port, "GET", "/")[0] == 200
        except OSError:
            return False

    def enqueue_welcome(self, email: str) -> None:
        status, cookies, page = request(self.port, "GET", "/")
        assert status == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, "the page has no CSRF token"
        status, _, _ = request(
            self.port,
            "POST",
            "/enqueue/",
            body=urlencode(
                {"csrfmiddlewaretoken": token.group(1), "kind": "welcome", "email": email}
            ),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={cookies['csrftoken']}",
            },
        )
        assert status == 302, f"POST /enqueue/ answered {status}\n{self.output()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def run_server(tmp_path: Path, database: Path) -> Iterator[Callable[[Server], Running]]:
    started: list[Running] = []

    def run(server: Server) -> Running:
        running = Running(server, free_port(), demo_env(database), tmp_path / f"{server.name}.log")
        started.append(running)
        return running

    yield run
    for running in started:
        running.stop()


@pytest.mark.parametrize("server", SERVERS, ids=[s.name for s in SERVERS])
def test_server_runs_tasks_and_drains_them_on_sigterm(
    server: Server, run_server: Callable[[Server], Running], database: Path
) -> None:
    running = run_server(server)
    running.wait_until(running.serving, "answer on GET /")

    running.enqueue_welcome("ada@example.com")
    running.wait_until(lambda: statuses(database) == ["SUCCESSFUL"], "SUCCESSFUL first task")

    def supervisors() -> list[tuple[object, ...]]:
        return rows(database, "SELECT pid, pools FROM tandem_workerrecord")

    running.wait_until(lambda: len(supervisors()) == server.supervisors, "every supervisor")
    pids = {pid for pid, _ in supervisors()}
    assert len(pids) == server.supervisors, "one supervisor per server worker process"
    assert (running.process.pid in pids) is server.in_server_process
    executors = {
        pool["executor"] for _, pools in supervisors() for pool in json.loads(str(pools)).values()
    }
    assert executors == {DEFAULT_EXECUTOR}

    running.enqueue_welcome("grace@example.com")  # sleeps 1 s: SIGTERM arrives while it runs
    running.wait_until(lambda: statuses(database)[1:] == ["RUNNING"], "RUNNING second task")
    running.process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    try:
        code = running.process.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{server.name} still running {DEADLINE:g}s after SIGTERM\n{running.output()}")
    elapsed = time.monotonic() - stopped

    assert code in server.exit_codes, f"exit code {code} after {elapsed:.1f}s\n{running.output()}"
    assert statuses(database) == ["SUCCESSFUL", "SUCCESSFUL"], running.output()
    assert rows(database, "SELECT id FROM tandem_taskrecord WHERE status = 'RUNNING'") == []
    assert rows(database, "SELECT id FROM tandem_workerrecord") == [], (
        "a supervisor stayed registered"
    )
    returned = rows(
        database, f"SELECT return_value FROM tandem_taskrecord WHERE task_path = '{WELCOME}'"
    )
    assert sorted(str(v) for (v,) in returned) == [
        '"Welcome email sent to ada@example.com"',
        '"Welcome email sent to grace@example.com"',
    ]

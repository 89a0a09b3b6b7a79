"""Real ``tandem serve`` processes on the test database, HTTP requests to them, bounded waits
(used by the serve, monitoring, browser and chaos tiers; the ``servers`` fixture is in
``tests.support.fixtures``)."""

from __future__ import annotations

import http.client
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from django.conf import settings

from tests.support import free_port
from tests.support.processes import Child, process_env
from tests.support.processes import wait_until as process_wait_until

# Subinterpreters (for the task pool and the web side): Python 3.14, and not on MariaDB, whose
# driver (mysqlclient) does not load in a subinterpreter.
HAS_SUBINTERPRETERS = sys.version_info >= (3, 14) and settings.DB_KIND != "mariadb"
# Every HTTP arrangement of ``tandem serve`` this Python can run.
ARRANGEMENTS = ["threads", "interpreters"] if HAS_SUBINTERPRETERS else ["threads"]


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_until(
    predicate: Callable[[], object],
    what: str,
    timeout: float = 60.0,
    alive: Sequence[Server] = (),
) -> None:
    """``tests.support.processes.wait_until`` with a longer default for servers."""
    process_wait_until(predicate, what, timeout, alive)


class Server(Child):
    """``python -m django tandem serve`` (or any argv) with its output in files."""

    def wait(self, timeout: float = 60.0) -> int:
        return super().wait(timeout)

    def children(self) -> list[int]:
        """Pids of the serve processes a ``--supervise`` parent reported starting."""
        return [int(pid) for pid in re.findall(r"started serve \(pid (\d+)\)", self.stderr)]

    def kill(self) -> None:
        """Kill the process, and first the children a ``--supervise`` parent still has."""
        if self.running():
            for pid in self.children():
                if parent_of(pid) == self.pid:  # still ours: the pid was not reused
                    os.kill(pid, signal.SIGKILL)
            self.process.kill()
        self.process.wait()


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def serve_env(**extra: str) -> dict[str, str]:
    """A child environment for ``tests.support.serve_settings``: no TANDEM_TEST_* knobs but the
    DB."""
    return process_env(
        settings_module="tests.support.serve_settings",
        inherit=lambda key: not key.startswith("TANDEM_TEST_") or key == "TANDEM_TEST_DB",
        **extra,
    )


class Servers:
    """Starts ``tandem serve`` processes for one test; kills what is left when it ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Server] = []

    def serve(
        self,
        *args: str,
        arrangement: str = "threads",
        grace: float = 30.0,
        name: str | None = None,
        answering: bool = True,
        **env: str,
    ) -> tuple[Server, int]:
        """Start ``tandem serve`` on a free port and (unless not ``answering``) wait until it
        answers; (server, port)."""
        port = free_port()
        web = ["--web-interpreters", "2"] if arrangement == "interpreters" else []
        argv = ["-m", "django", "tandem", "serve", "--bind", f"127.0.0.1:{port}"]
        server = Server(
            [*argv, "--grace", f"{grace:g}", *web, *args],
            self.directory,
            name or f"serve-{len(self.started)}",
            serve_env(**env),
        )
        self.started.append(server)
        if answering:
            wait_until(lambda: answers(port), f"{server.name} to answer HTTP", 60, alive=[server])
        return server, port

    def kill_all(self) -> None:
        for server in self.started:
            server.kill()


def answers(port: int) -> bool:
    try:
        return get(port, "/ping/", timeout=2)[0] == 200
    except OSError:
        return False

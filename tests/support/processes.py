"""Real ``tandem worker`` processes for the process tier, and bounded waits on the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def process_env(
    *,
    settings_module: str = "tests.settings",
    inherit: Callable[[str], bool] = lambda key: key != "TANDEM_TEST_LEASE",
    **extra: str,
) -> dict[str, str]:
    """The environment of a child process: test settings, pointed at the test database.

    ``inherit``: which of this process's variables the child keeps.
    """
    env = {k: v for k, v in os.environ.items() if inherit(k)}
    env.update(
        DJANGO_SETTINGS_MODULE=settings_module,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        PYTHONUNBUFFERED="1",
        TANDEM_TEST_DB=settings.DB_KIND,
        TANDEM_DB_NAME=str(connection.settings_dict["NAME"]),
    )
    env.update(extra)
    return env


class Child:
    """A child process whose stdout and stderr go to files, so reading them never blocks it."""

    def __init__(self, argv: Sequence[str], directory: Path, name: str, env: dict[str, str]):
        self.name = name
        self.stdout_path = directory / f"{name}.out"
        self.stderr_path = directory / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, *argv], cwd=ROOT, env=env, stdout=out, stderr=err
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout:g}s\n{self.output()}"
            ) from None

    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- {self.name} stdout ---\n{self.stdout}--- {self.name} stderr ---\n{self.stderr}"

    def kill(self) -> None:
        if self.running():
            self.process.kill()
        self.process.wait()


class Children:
    """Starts children for one test and kills whatever is left when the test ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Child] = []

    def worker(self, *args: str, name: str | None = None, **env: str) -> Child:
        """``python -m django tandem worker ARGS``."""
        return self.python("-m", "django", "tandem", "worker", *args, name=name, **env)

    def python(self, *argv: str, name: str | None = None, **env: str) -> Child:
        child = Child(
            argv, self.directory, name or f"child-{len(self.started)}", process_env(**env)
        )
        self.started.append(child)
        return child

    def kill_all(self) -> None:
        for child in self.started:
            child.kill()


def wait_until(
    predicate: Callable[[], object],
    what: str,
    timeout: float = 60.0,
    alive: Sequence[Child] = (),
) -> None:
    """Poll ``predicate`` every 50 ms; fail after ``timeout`` seconds. Never a speed assertion.

    ``alive``: children that must keep running meanwhile; one that exits fails the wait at once,
    with its output.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        for child in alive:
            if not child.running():
                raise AssertionError(
                    f"{child.name} exited ({child.process.returncode}) while waiting for "
                    f"{what}\n{child.output()}"
                )
        if time.monotonic() > deadline:
            outputs = "\n".join(child.output() for child in alive)
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{outputs}")
        time.sleep(0.05)


def family(pid: int) -> list[int]:
    """``pid`` and every process descended from it (a worker and its pool's children)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.append(child)
                frontier.append(child)
    return found

"""``tandem.serve.supervise``, the parent of ``serve --supervise``, with plain child commands:
restarts after a crash, forwards signals, exits with the child's status after a requested stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tandem.serve import supervise

SUPERVISE = Path(supervise.__file__)

pytestmark = pytest.mark.process


def parent(*child: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-P", str(SUPERVISE), "--", sys.executable, "-c", *child],
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_crashed_child_is_restarted_until_it_exits_zero(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    crash_twice = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text()) "
        "if p.exists() else 0; p.write_text('x' * (n + 1)); sys.exit(3 if n < 2 else 0)"
    )
    proc = parent(crash_twice, str(runs))

    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert runs.read_text() == "xxx"
    assert err.count("exited with status 3; restarting in") == 2
    assert err.count("started serve (pid") == 3


def test_a_child_killed_by_a_signal_the_parent_did_not_send_is_restarted(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    killed_once = (
        "import os, pathlib, signal, sys; p = pathlib.Path(sys.argv[1]); first = not p.exists(); "
        "p.touch(); first and os.kill(os.getpid(), signal.SIGKILL)"
    )
    proc = parent(killed_once, str(runs))

    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert "was killed by SIGKILL; restarting in 0.5s" in err


def test_sigterm_is_forwarded_and_the_parent_exits_with_the_childs_status(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    trap = (
        "import pathlib, signal, sys, time; "
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
    )
    proc = parent(trap, str(ready))
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 7, err
    assert "restarting" not in err


def test_a_child_killed_by_the_forwarded_signal_is_not_restarted(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = parent(
        "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(60)", str(ready)
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "restarting" not in err


def test_child_argv_is_this_command_line_without_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sys,
        "orig_argv",
        ["python3", "-X", "dev", "manage.py", "tandem", "serve", "--supervise", "--grace", "5"],
    )

    assert supervise.child_argv() == [
        sys.executable,
        "-X",
        "dev",
        "manage.py",
        "tandem",
        "serve",
        "--grace",
        "5",
    ]


def test_child_argv_needs_the_flag_on_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "pytest"])

    with pytest.raises(RuntimeError, match="works only from the command line"):
        supervise.child_argv()

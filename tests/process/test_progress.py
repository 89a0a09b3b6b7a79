"""``tandem worker --burst``: a progress bar on stderr when it is a terminal, none otherwise."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tandem.monitoring.progress import render
from tests.support.processes import ROOT, Children, process_env
from tests.tasks import noop

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

BAR = re.compile(r"\[([#-]{30})\] (\d+)/(\d+) tasks, (\d+) running")


def test_render() -> None:
    assert render(0, 4, 1) == f"[{'-' * 30}] 0/4 tasks, 1 running"
    assert render(2, 4, 2) == f"[{'#' * 15}{'-' * 15}] 2/4 tasks, 2 running"
    assert render(3, 3, 0) == f"[{'#' * 30}] 3/3 tasks, 0 running"
    assert render(0, 0, 0) == f"[{'#' * 30}] 0/0 tasks, 0 running"  # nothing to do: done


def read_terminal(master: int, process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """Everything written to the terminal until the process exits (bounded)."""
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # the slave side closed: the process ended
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    return b"".join(chunks).decode(errors="replace")


def test_burst_on_a_terminal_shows_tasks_done_out_of_the_total(tmp_path: Path) -> None:
    for _ in range(5):
        noop.enqueue()
    master, slave = pty.openpty()
    with (tmp_path / "out").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "tandem", "worker", "--burst", "-w", "1"],
            cwd=ROOT,
            env=process_env(),
            stdout=out,
            stderr=slave,
        )
    os.close(slave)
    try:
        screen = read_terminal(master, process)
        assert process.wait(30) == 0, screen
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()

    bars = BAR.findall(screen)
    assert bars, screen
    assert bars[-1] == ("#" * 30, "5", "5", "0")  # the last drawing: all done
    assert all(int(total) == 5 for _, _, total, _ in bars)  # the total never wavers
    assert "\r\x1b[K" in screen  # redrawn in place
    assert screen.rstrip("\r\n").endswith("5/5 tasks, 0 running")


def test_burst_without_a_terminal_draws_no_bar(children: Children) -> None:
    for _ in range(3):
        noop.enqueue()

    worker = children.worker("--burst")

    assert worker.wait() == 0, worker.output()
    assert not BAR.search(worker.stderr), worker.stderr
    assert "stopped: 3 task(s) settled." in worker.stdout

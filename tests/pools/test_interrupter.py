"""The worker interpreter's ``Interrupter`` as the watchdog of every attempt
(``tandem.worker.pools.runner``): a timed attempt gets ``TaskTimeout`` at its deadline from the
one thread the interpreter keeps, never from a thread started for that attempt, and an attempt
that ended in time gets nothing."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tandem.brokers.base import StoredTask
from tandem.exceptions import TaskTimeout
from tandem.worker.pools import runner
from tests.support.doubles import running_task


@pytest.fixture
def interrupter() -> Iterator[runner.Interrupter]:
    """An ``Interrupter`` for the calling thread, as ``runner.serve`` makes one."""
    signal_r, signal_w = os.pipe()
    made = runner.Interrupter(queue.SimpleQueue(), signal_r, signal_w)
    try:
        yield made
    finally:
        made.close(signal_w)
        os.close(signal_r)
        os.close(signal_w)


def _spin(task: StoredTask, current: Any = None) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.001)
    raise AssertionError("never interrupted")


def _no_watchdog(timeout: float) -> None:
    raise AssertionError("a thread was started for this attempt")


@pytest.mark.django_db
def test_the_interrupter_times_every_attempt_out_without_a_thread_each(
    interrupter: runner.Interrupter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "Watchdog", _no_watchdog)
    started = threading.active_count()
    for _ in range(20):  # attempts that end in time, one after another: never interrupted
        outcome = runner.run(running_task(task_path="tests.tasks.noop"), 0.2, interrupter)
        assert outcome.succeeded, outcome.error
    assert threading.active_count() == started

    monkeypatch.setattr("tandem.execution.execute", _spin)
    began = time.monotonic()
    outcome = runner.run(running_task(attempt_token="b" * 32), 0.3, interrupter)
    assert time.monotonic() - began >= 0.3
    assert outcome.error is not None
    assert outcome.error.exception_class_path == "tandem.exceptions.TaskTimeout"
    assert outcome.finished_signal


def test_a_later_deadline_does_not_wake_the_interrupter_an_earlier_one_does(
    interrupter: runner.Interrupter, monkeypatch: pytest.MonkeyPatch
) -> None:
    nudges: list[bytes] = []
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: nudges.append(data) or write(fd, data))
    interrupter.arm(60.0)  # idle before: it must look at the deadline
    interrupter.disarm()
    time.sleep(0.05)
    for _ in range(5):  # the same timeout, one attempt after another: it sleeps on
        interrupter.arm(60.0)
        interrupter.disarm()
    assert nudges == [b"t"]
    interrupter.arm(1.0)  # sooner than it plans to wake
    interrupter.disarm()
    assert nudges == [b"t", b"t"]


def test_a_disarmed_deadline_never_fires(interrupter: runner.Interrupter) -> None:
    interrupter.arm(0.05)
    interrupter.disarm()
    try:
        time.sleep(0.3)  # would raise TaskTimeout here
    except TaskTimeout:
        pytest.fail("the interrupter fired after its attempt ended")

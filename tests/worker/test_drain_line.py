"""The drain line (``tandem worker``'s first SIGTERM) counts the tasks the worker is finishing:
rows its round claimed count as in flight before the round hands them to the pool."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest
from django.db import connection

from tandem.cli.worker import stop_signals
from tandem.worker.supervisor import Supervisor
from tests.support.harness import Harness
from tests.tasks import noop

pytestmark = pytest.mark.django_db(transaction=True)

GATE_TIMEOUT = 60  # liveness only: a broken gate fails the test instead of hanging it


def hold_the_hand_over(supervisor: Supervisor) -> tuple[threading.Event, threading.Event]:
    """The round stops after its claim committed, before the tasks are in flight (the first
    thing the hand-over does is register their leases with the heartbeat): (reached, release)."""
    reached, release = threading.Event(), threading.Event()
    claimed = supervisor.heartbeat.claimed

    def held(*args: Any) -> None:
        reached.set()
        assert release.wait(GATE_TIMEOUT)
        claimed(*args)

    supervisor.heartbeat.claimed = held  # type: ignore[method-assign]
    return reached, release


def test_the_drain_line_counts_claimed_tasks_not_yet_handed_to_the_pool(harness: Harness):
    noop.enqueue()
    noop.enqueue()
    supervisor = harness.supervisor(workers=2)
    supervisor.start()
    reached, release = hold_the_hand_over(supervisor)
    steps: list[int] = []

    def step() -> None:
        try:
            steps.append(supervisor.step())
        finally:
            connection.close()  # this thread's

    stepping = threading.Thread(target=step)
    stepping.start()
    lines: list[str] = []
    try:
        assert reached.wait(GATE_TIMEOUT)
        assert [len(s.in_flight) for s in supervisor.pools] == [0]  # not handed over yet
        assert supervisor.in_flight == 2

        with stop_signals(supervisor, lines.append):
            signal.raise_signal(signal.SIGTERM)
    finally:
        release.set()
        stepping.join(GATE_TIMEOUT)

    assert lines[0].startswith("SIGTERM: draining — finishing 2 in-flight task(s);")
    assert steps == [2]
    assert supervisor.in_flight == 2  # handed over: each counted once
    assert supervisor._handing == []


def test_a_round_rolled_back_leaves_nothing_counted(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
):
    """A claim whose round failed never runs here: it is not counted as in flight."""
    noop.enqueue()
    supervisor = harness.supervisor(workers=1)
    supervisor.start()

    monkeypatch.setattr(supervisor, "_claim", _claim_then_fail(supervisor._claim))
    with pytest.raises(RuntimeError):
        supervisor.step()

    assert supervisor.in_flight == 0
    assert supervisor._handing == []


def _claim_then_fail(claim: Any) -> Any:
    def run(*args: Any) -> Any:
        assert claim(*args)
        raise RuntimeError("the round fails after its claim")

    return run

"""``Supervisor.run()`` while the task store is down: it backs off (0.5 s, 1 s, 2 s, … up to 30 s)
and carries on when the store is back. Outcomes that pool threads deliver during an outage must
not cut the back-off short: each would be one more failed attempt, and would double the delay, so
a busy worker hit by a short outage would hammer the store and then sleep for up to 30 s after
it is back.

The store's outage is simulated: the broker's transaction fails while ``down`` is set (the real
thing, a restarted server, is in tests/scale/test_restart.py).
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager

import pytest
from django.db import OperationalError
from django.tasks import TaskResult

from tandem.brokers.base import RUNNING, SUCCESSFUL
from tandem.brokers.database import DatabaseBroker
from tandem.models import TaskRecord
from tests.support.doubles import wait_for
from tests.support.harness import Harness
from tests.tasks import gate, gated

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = 8


class OutageBroker(DatabaseBroker):
    """The database broker, whose round transaction fails while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__("default")
        self.down = threading.Event()
        self.failed = 0

    def transaction(self) -> AbstractContextManager[None]:
        if self.down.is_set():
            self.failed += 1
            raise OperationalError("the task store is down (injected by the test)")
        return super().transaction()


def status(result: TaskResult) -> str:
    return str(TaskRecord.objects.get(id=result.id).status)


def test_outcomes_delivered_during_an_outage_do_not_cut_the_back_off_short(
    harness: Harness, threads: None
) -> None:
    broker = OutageBroker()
    results = [gated.enqueue(f"outage-{n}") for n in range(TASKS)]
    supervisor = harness.supervisor(workers=TASKS, broker=broker)
    thread = harness.run_in_background(supervisor)
    wait_for(lambda: all(status(r) == RUNNING for r in results), "every task to be claimed")

    broker.down.set()
    gate("outage-0").set()  # the first outcome: settling it fails, the back-off (0.5 s) begins
    wait_for(lambda: supervisor.store_errors == 1, "the first failed attempt")
    for n in range(1, TASKS):  # more outcomes, each delivered on its own, during the back-off
        gate(f"outage-{n}").set()
        wait_for(lambda n=n: len(supervisor._outcomes) >= n + 1, f"outcome {n + 1} delivered")
        time.sleep(0.01)
    broker.down.clear()

    wait_for(lambda: all(status(r) == SUCCESSFUL for r in results), "every task to succeed")
    # One failed attempt, then the next only when 0.5 s were up: by then the store was back
    # (a second failure is possible only if delivering the outcomes took that long).
    assert supervisor.store_errors <= 2, supervisor.store_errors
    assert broker.failed == supervisor.store_errors
    assert thread.is_alive()  # a store outage never ends run()


def test_a_stop_request_cuts_the_back_off_short(harness: Harness, threads: None) -> None:
    broker = OutageBroker()
    result = gated.enqueue("stop")
    supervisor = harness.supervisor(workers=1, broker=broker)
    thread = harness.run_in_background(supervisor)
    wait_for(lambda: status(result) == RUNNING, "the task to be claimed")

    broker.down.set()
    gate("stop").set()  # its outcome cannot be settled while the store is down
    waiting: list[float] = []  # each back-off as it begins
    back_offs: list[tuple[float, float]] = []  # (seconds asked for, seconds left when it ended)
    back_off = supervisor._back_off

    def recorded(seconds: float) -> None:
        waiting.append(seconds)
        deadline = time.monotonic() + seconds
        back_off(seconds)
        back_offs.append((seconds, deadline - time.monotonic()))

    supervisor._back_off = recorded  # type: ignore[method-assign]
    wait_for(lambda: waiting[-1:] == [4.0], "four failed attempts (0.5, 1, 2 s apart)")
    assert supervisor.store_errors == 4
    # The next attempt is 4 s away; a forced stop does not wait for it.
    supervisor.request_stop(force=True)
    thread.join(30)
    assert not thread.is_alive()
    # The 4 s back-off ended early, at the stop (no wall-clock bound on the close that follows).
    seconds, left = back_offs[-1]
    assert seconds == 4.0 and left > 0, back_offs
    assert supervisor.store_errors == 5  # the one attempt the stop made: release, then give up

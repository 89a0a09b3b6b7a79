"""Per-key concurrency limits end to end: a real supervisor with free workers starts only as many
tasks of a key as its limit allows; the rest wait READY (or, with ``on_limit="discard"``, end
FAILED with ``ConcurrencyLimited`` without running).

(The broker calls behind them are in tests/contract/test_concurrency_limits.py, on every store.)
"""

from __future__ import annotations

import copy

import pytest
from django.tasks import task_backends

from tandem.brokers.base import FAILED, READY, RUNNING, SUCCESSFUL
from tests.features.tasks import gated_export, gated_per_account
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness
from tests.tasks import gate

pytestmark = pytest.mark.django_db(transaction=True)


def stored(result_id: str):  # type: ignore[no-untyped-def]
    return task_backends["default"].broker.get(result_id)  # type: ignore[attr-defined]


def test_one_task_per_key_runs_at_a_time_and_the_next_starts_when_it_ends(
    harness: Harness,
) -> None:
    first = gated_per_account.enqueue("acct-a-1", "a")
    second = gated_per_account.enqueue("acct-a-2", "a")
    other = gated_per_account.enqueue("acct-b-1", "b")
    supervisor = harness.supervisor(workers=3, clock=FrozenClock())

    assert supervisor.step() == 2  # three free workers: one task of each account
    assert [stored(r.id).status for r in (first, second, other)] == [RUNNING, READY, RUNNING]
    assert stored(second.id).attempts == 0  # waiting counts no attempt

    gate("acct-a-1").set()
    gate("acct-b-1").set()
    harness.wait_for_outcomes(supervisor, 2)
    supervisor.step()  # settles both, freeing account a's slot; claims the waiting task
    assert stored(first.id).status == SUCCESSFUL
    assert stored(second.id).status == RUNNING
    gate("acct-a-2").set()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    assert stored(second.id).status == SUCCESSFUL


def test_discard_drops_a_task_that_would_have_to_wait(harness: Harness) -> None:
    running = gated_export.enqueue("export-1")
    dropped = gated_export.enqueue("export-2")
    supervisor = harness.supervisor(workers=2, clock=FrozenClock())

    supervisor.step()

    assert stored(running.id).status == RUNNING
    result = task_backends["default"].get_result(dropped.id)
    assert (result.status, result.attempts) == (FAILED, 0)
    [error] = result.errors
    assert error.exception_class_path == "tandem.exceptions.ConcurrencyLimited"
    gate("export-1").set()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    assert stored(running.id).status == SUCCESSFUL


def test_settling_a_keyed_task_wakes_the_other_workers_of_its_queue(harness: Harness) -> None:
    """A freed slot may let a task waiting in another worker start: the settle announces the
    queue (on PostgreSQL a NOTIFY delivered at commit), as an enqueue would."""
    broker = copy.copy(task_backends["default"].broker)  # type: ignore[attr-defined]
    announced: list[list[str]] = []
    broker.notify = lambda queues: announced.append(list(queues))
    first = gated_per_account.enqueue("wake-1", "c")
    gated_per_account.enqueue("wake-2", "c")
    supervisor = harness.supervisor(workers=1, clock=FrozenClock(), broker=broker)
    supervisor.step()
    assert announced == []

    gate("wake-1").set()
    gate("wake-2").set()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()

    assert stored(first.id).status == SUCCESSFUL
    assert announced == [["default"]]

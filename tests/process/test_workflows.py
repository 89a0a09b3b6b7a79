"""A group's callback is enqueued exactly once with two real worker processes, one of them
killed with SIGKILL while the group's items run (its items are recovered by the other)."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

import tandem
from tandem.brokers.base import SUCCESSFUL
from tandem.models import TaskRecord
from tests import tasks as features
from tests.models import Ledger
from tests.support.processes import Children, wait_until
from tests.tasks import sleep_then_ledger

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

ITEMS = 200


def test_a_group_callback_runs_once_across_two_workers_and_a_kill(children: Children) -> None:
    group = tandem.group(
        [(sleep_then_ledger, [f"item-{n}", 0.02], None) for n in range(ITEMS)],
        then=features.group_done,
    )
    doomed = children.worker("-w", "2", name="doomed", TANDEM_TEST_LEASE="2")
    survivor = children.worker("-w", "2", name="survivor", TANDEM_TEST_LEASE="2")
    wait_until(
        lambda: Ledger.objects.filter(key__startswith="item-").count() >= ITEMS // 5,
        "a fifth of the items to run",
        alive=[doomed, survivor],
    )
    doomed.send(signal.SIGKILL)
    doomed.wait()
    wait_until(
        lambda: Ledger.objects.filter(key=f"then:{group.id}").exists(),
        "the group's callback to run",
        timeout=150,
        alive=[survivor],
    )
    survivor.send(signal.SIGTERM)
    assert survivor.wait(60) == 0, survivor.output()

    fresh = tandem.get_group(group.id)
    assert fresh.finished and fresh.done == ITEMS
    runs = Counter(Ledger.objects.filter(key__startswith="item-").values_list("key", flat=True))
    assert len(runs) == ITEMS  # every item ran (some twice: the killed worker's)
    assert list(Ledger.objects.filter(key=f"then:{group.id}").values_list("worker", flat=True)) == [
        f"{ITEMS}/{ITEMS}"
    ]
    then = TaskRecord.objects.get(id=fresh.then_id)
    assert (then.status, then.attempts, then.args) == (SUCCESSFUL, 1, [group.id])
    assert TaskRecord.objects.filter(task_path=then.task_path).count() == 1

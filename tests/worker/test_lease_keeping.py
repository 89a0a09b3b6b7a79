"""``Supervisor.run()`` keeps its leases on a heartbeat of its own, and stops what it cannot keep.

- While the claim loop backs off after store errors, the heartbeat still renews every lease.
- An attempt whose lease cannot be renewed is stopped by its own worker before the store can
  expire the lease (so no other worker can have started it yet), and runs again later.
- An attempt the store no longer holds for this worker (re-claimed elsewhere) is stopped at the
  next renewal: a process is killed, an interpreter interrupted, a thread abandoned — and its
  ending is never written.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError
from django.tasks import TaskResult
from django.tasks.signals import task_finished
from django.utils import timezone

from tandem.brokers.base import RUNNING, SUCCESSFUL
from tandem.brokers.database import DatabaseBroker
from tandem.models import TaskRecord
from tests.support.doubles import wait_for
from tests.support.harness import Harness
from tests.support.pools import EXECUTORS
from tests.tasks import gate, gated, lease_probe

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = 3.0  # heartbeats every second, renewals retried every half second


class FlakyStore(DatabaseBroker):
    """The database broker; ``down`` fails the claim loop's round, ``renewals_down`` renewals."""

    def __init__(self) -> None:
        super().__init__("default")
        self.down = threading.Event()
        self.renewals_down = threading.Event()
        self.failed = 0
        self.renewed = 0

    def transaction(self) -> AbstractContextManager[None]:
        if self.down.is_set():
            self.failed += 1
            raise OperationalError("the task store is down (injected by the test)")
        return super().transaction()

    def renew(self, *args: Any, **kwargs: Any) -> set[str]:
        if self.renewals_down.is_set():
            raise OperationalError("the task store is down (injected by the test)")
        held = super().renew(*args, **kwargs)
        self.renewed += 1
        return held


def row(result: TaskResult) -> TaskRecord:
    return TaskRecord.objects.get(id=result.id)


@pytest.fixture
def short_lease(tandem_settings: Any) -> None:
    tandem_settings(lease_seconds=LEASE, executor="thread")


@pytest.mark.usefixtures("short_lease")
def test_leases_are_renewed_while_the_claim_loop_backs_off(harness: Harness) -> None:
    broker = FlakyStore()
    result = gated.enqueue("backs-off")
    supervisor = harness.supervisor(workers=1, broker=broker)
    harness.run_in_background(supervisor)
    wait_for(lambda: row(result).status == RUNNING, "the task to be claimed")

    broker.down.set()  # every round fails from now on: the loop backs off 0.5 s, 1 s, 2 s, 4 s…
    renewed = broker.renewed
    # Three lease lengths of back-off, renewed throughout: no other worker may take the task.
    wait_for(lambda: broker.failed >= 4, "the claim loop to back off four times", timeout=30)
    wait_for(lambda: broker.renewed >= renewed + 9, "nine renewals in the outage", timeout=30)
    assert DatabaseBroker("default").recover_expired(timezone.now(), 3) == []
    assert supervisor.lost_attempts == 0

    broker.down.clear()
    gate("backs-off").set()
    wait_for(lambda: row(result).status == SUCCESSFUL, "the task to finish", timeout=60)
    assert len(row(result).worker_ids) == 1  # one attempt: never recovered


@pytest.mark.usefixtures("short_lease")
def test_an_attempt_whose_lease_cannot_be_renewed_is_stopped_before_it_expires(
    harness: Harness,
) -> None:
    broker = FlakyStore()
    result = gated.enqueue("unrenewable", 60)
    finished: list[Any] = []

    def receiver(sender: object, task_result: Any, **kwargs: object) -> None:
        finished.append(task_result.id)

    task_finished.connect(receiver, weak=False, dispatch_uid="test-unrenewable")
    try:
        supervisor = harness.supervisor(workers=1, broker=broker)
        harness.run_in_background(supervisor)
        wait_for(lambda: row(result).status == RUNNING, "the task to be claimed")
        broker.renewals_down.set()
        broker.down.set()

        wait_for(lambda: supervisor.lost_attempts == 1, "the attempt to be stopped", timeout=30)
        [lost] = supervisor.heartbeat.stopped
        assert lost.deadline is not None and lost.at < lost.deadline  # before the store expires
        assert row(result).status == RUNNING  # the store still holds the (now idle) lease

        gate("unrenewable").set()  # the abandoned thread returns: its ending is discarded
        broker.renewals_down.clear()
        broker.down.clear()
        # The lease expires on the store's clock, the task is recovered and runs again.
        wait_for(lambda: row(result).status == SUCCESSFUL, "the second attempt", timeout=60)
        # (sent once the ending is stored, on a thread of its own)
        wait_for(lambda: finished, "task_finished of the second attempt")
    finally:
        task_finished.disconnect(dispatch_uid="test-unrenewable")
    stored = row(result)
    assert len(stored.worker_ids) == 2
    assert [e["exception_class_path"] for e in stored.errors] == ["tandem.exceptions.WorkerLost"]
    assert finished == [result.id]  # only the attempt whose ending was stored


@pytest.mark.usefixtures("short_lease")
def test_a_burst_worker_stays_until_the_attempt_it_stopped_is_recovered_and_run(
    harness: Harness,
) -> None:
    """``--burst``: an attempt stopped for a lost lease leaves its row RUNNING until the lease
    expires. The burst does not end there (queues empty, nothing in flight): it waits, recovers
    the row and runs it."""
    broker = FlakyStore()
    result = gated.enqueue("burst-lost", 60)
    supervisor = harness.supervisor(workers=1, broker=broker, burst=True)
    thread = harness.run_in_background(supervisor)
    wait_for(lambda: row(result).status == RUNNING, "the task to be claimed")
    broker.renewals_down.set()
    broker.down.set()
    wait_for(lambda: supervisor.lost_attempts == 1, "the attempt to be stopped", timeout=30)

    gate("burst-lost").set()  # the abandoned thread returns; the second attempt won't wait
    broker.renewals_down.clear()
    broker.down.clear()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the burst worker did not exit"
    stored = row(result)
    assert stored.status == SUCCESSFUL, stored.status  # run again by the same burst
    assert len(stored.worker_ids) == 2
    assert supervisor._unrecovered == []


@pytest.mark.parametrize("executor", EXECUTORS)
def test_an_attempt_claimed_elsewhere_is_stopped_at_the_next_renewal(
    executor: str, harness: Harness, tandem_settings: Any, tmp_path: Path
) -> None:
    tandem_settings(lease_seconds=LEASE, executor=executor)
    probe = tmp_path / "probe.txt"
    result = lease_probe.enqueue(str(probe), 60)
    supervisor = harness.supervisor(workers=1)
    harness.run_in_background(supervisor)
    # A process pool's child starts in the idle scheduling class: on a loaded machine (CI's four
    # test streams) it waited more than 30 s for a free core before its first line ran.
    wait_for(
        lambda: probe.exists() and probe.read_text().startswith("start"),
        "the task to start",
        timeout=90,
    )
    pid = int(probe.read_text().split()[1])

    # Another worker's claim, as after a recovery: a new holder, a new attempt token and a lease
    # of its own. (Not this worker's lease, which it stops renewing: that one expires a lease
    # length after its last renewal, and a loaded machine's waits below took longer — the
    # supervisor's recovery then gave the row back to READY and it claimed the task again.)
    lease = timezone.now() + timedelta(hours=1)
    TaskRecord.objects.filter(id=result.id).update(
        worker_id="thief", attempt_token="f" * 32, lease_expires_at=lease
    )

    wait_for(lambda: supervisor.lost_attempts == 1, "the attempt to be stopped", timeout=30)
    if executor == "process":
        wait_for(lambda: not _alive(pid), "the worker process to be killed")
    elif executor == "subinterpreter":
        wait_for(lambda: "LeaseLost" in probe.read_text(), "the task to be interrupted")
    else:  # a thread cannot be stopped: it is abandoned and a fresh one takes its seat
        wait_for(lambda: supervisor.pools[0].pool.restarts >= 1, "the thread to be replaced")
    assert "end" not in probe.read_text().split()
    stored = row(result)
    # Nothing written over it: not the stopped attempt's ending, not a renewal, not a release.
    assert (stored.status, stored.worker_id, stored.attempt_token) == (RUNNING, "thief", "f" * 32)
    assert (stored.lease_expires_at, stored.errors) == (lease, [])
    TaskRecord.objects.filter(id=result.id).update(status="FAILED", worker_id="")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

"""The supervisor in this process: ``step()`` driven by the test with a frozen clock, or
``run()`` in a thread where the point is how it wakes up. Task code runs in real pool threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.tasks import TaskResult
from django.tasks.signals import task_finished
from django.utils import timezone

from tandem.brokers.base import FAILED, READY, RUNNING, SUCCESSFUL
from tandem.models import TaskRecord, WorkerRecord
from tests.models import Ledger
from tests.support.conformance import capture
from tests.support.doubles import FrozenClock, SpyBroker, wait_for
from tests.support.harness import Harness
from tests.tasks import add, critical_noop, flaky, gate, gated, keyed_sleep, noop, return_nul

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def record(result: TaskResult) -> TaskRecord:
    return TaskRecord.objects.get(id=result.id)


def error_classes(row: TaskRecord) -> list[str]:
    return [e["exception_class_path"] for e in row.errors]


# -- single writer, batched settlement ---------------------------------------------------------


def test_pool_threads_hand_outcomes_to_the_supervisor_which_settles_them_in_one_batch(
    harness: Harness,
) -> None:
    broker = SpyBroker()
    results = [add.enqueue(i, i) for i in range(4)]
    supervisor = harness.supervisor(broker=broker, workers=4, clock=FrozenClock())

    assert supervisor.step() == 4  # claimed all four
    harness.wait_for_outcomes(supervisor, 4)
    # Every task has run, but pool threads never write task state: the rows are still RUNNING.
    assert {record(r).status for r in results} == {RUNNING}
    assert broker.settlements == []

    assert supervisor.step() == 4  # settled all four
    assert [len(batch) for batch in broker.settlements] == [4]
    for i, result in enumerate(results):
        row = record(result)
        assert (row.status, row.return_value, row.attempts) == (SUCCESSFUL, 2 * i, 1)
        assert (row.worker_id, row.lease_expires_at) == ("", None)
    assert {thread for _, thread in broker.calls} == {threading.current_thread().name}
    assert supervisor.settled == 4


# -- waking up ---------------------------------------------------------------------------------


def test_enqueue_wakes_the_supervisor_after_commit_and_not_before(
    harness: Harness, tandem_settings
) -> None:
    tandem_settings(poll_interval=3600)
    supervisor = harness.supervisor(workers=1)
    assert supervisor.step() == 0  # started and subscribed; nothing to claim
    state = supervisor.pools[0]
    assert not state.dirty
    assert state.next_poll is not None and state.next_poll > timezone.now() + timedelta(minutes=59)
    supervisor._wake.clear()

    with transaction.atomic():
        result = add.enqueue(2, 3)
        assert not state.dirty and not supervisor._wake.is_set()  # invisible until the commit
    assert state.dirty and supervisor._wake.is_set()

    assert supervisor.step() == 1  # claimed although the next poll is an hour away
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    assert record(result).return_value == 5


def test_rolled_back_enqueue_neither_stores_nor_wakes(harness: Harness, tandem_settings) -> None:
    tandem_settings(poll_interval=3600)
    supervisor = harness.supervisor(workers=1)
    supervisor.step()
    supervisor._wake.clear()

    with pytest.raises(RuntimeError), transaction.atomic():
        add.enqueue(2, 3)
        raise RuntimeError("roll back")

    assert not supervisor.pools[0].dirty and not supervisor._wake.is_set()
    assert not TaskRecord.objects.exists()


def test_an_enqueue_on_a_queue_no_pool_serves_does_not_wake_the_supervisor(
    harness: Harness, tandem_settings
) -> None:
    """Another worker's queue: a round would find nothing new (and ``serve``'s views would cost
    this process's supervisor a round per such enqueue)."""
    tandem_settings(poll_interval=3600)
    supervisor = harness.supervisor(queues=["default"], workers=1)
    supervisor.step()
    supervisor._wake.clear()
    supervisor._urgent.clear()

    critical_noop.enqueue()  # on "critical"

    assert not supervisor._wake.is_set() and not supervisor._urgent.is_set()
    assert not supervisor.pools[0].dirty
    add.enqueue(2, 3)  # on "default"
    assert supervisor._wake.is_set() and supervisor.pools[0].dirty


def test_enqueue_in_this_process_wakes_a_sleeping_run_loop(
    harness: Harness, tandem_settings
) -> None:
    tandem_settings(poll_interval=3600)  # only the wake-up can get the task claimed in time
    supervisor = harness.supervisor(workers=1)
    thread = harness.run_in_background(supervisor)
    wait_for(lambda: supervisor.pools[0].next_poll is not None, "the first (empty) claim")

    result = add.enqueue(20, 22)

    wait_for(lambda: record(result).status == SUCCESSFUL, "the task to succeed")
    assert record(result).return_value == 42
    supervisor.request_stop()
    thread.join(10)
    assert not thread.is_alive()


def test_a_wake_up_during_a_round_is_not_lost_to_that_rounds_older_clock(
    harness: Harness, tandem_settings
) -> None:
    """A task enqueued while a round runs, after the round read its clock, is due later than
    that round's claim can see: its wake-up still gets it claimed, not the next poll (an hour
    away here: the wake-up was lost, seen on a loaded machine as a view's task not starting)."""
    from contextlib import AbstractContextManager

    from tandem.brokers.database import DatabaseBroker

    tandem_settings(poll_interval=3600)
    enqueued: list[TaskResult] = []

    class EnqueueMidRound(DatabaseBroker):
        def transaction(self) -> AbstractContextManager[None]:
            if not enqueued:  # the first round, after its clock was read: the task commits
                enqueued.append(add.enqueue(20, 22))
            return super().transaction()

    readings = 0

    def clock() -> datetime:
        nonlocal readings
        readings += 1  # the first round's clock is read a moment before the enqueue
        return timezone.now() - timedelta(seconds=1 if readings == 1 else 0)

    supervisor = harness.supervisor(
        workers=1, burst=True, clock=clock, broker=EnqueueMidRound("default")
    )
    supervisor.run()

    assert record(enqueued[0]).status == SUCCESSFUL


ENQUEUE_ONE = (
    "import django; django.setup(); from tests.tasks import add; print(add.enqueue(2, 5).id)"
)


def enqueue_in_another_process() -> str:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "TANDEM_DB_NAME": str(connection.settings_dict["NAME"]),
    }
    enqueued = subprocess.run(
        [sys.executable, "-c", ENQUEUE_ONE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return enqueued.stdout.strip()


def assert_woken_by_another_process(harness: Harness) -> None:
    """With polling out of the picture, a task enqueued elsewhere still runs promptly."""
    supervisor = harness.supervisor(workers=1, listen=True)
    thread = harness.run_in_background(supervisor)
    wait_for(lambda: supervisor.pools[0].next_poll is not None, "the first (empty) claim")

    task_id = enqueue_in_another_process()

    wait_for(
        lambda: TaskRecord.objects.filter(id=task_id, status=SUCCESSFUL).exists(),
        "the task enqueued elsewhere to succeed",
    )
    assert TaskRecord.objects.get(id=task_id).return_value == 7
    supervisor.request_stop()
    thread.join(10)
    assert not thread.is_alive()


@pytest.mark.postgres
def test_enqueue_in_another_process_wakes_the_supervisor_through_notify(
    harness: Harness, tandem_settings
) -> None:
    tandem_settings(poll_interval=3600)  # only NOTIFY can get the task claimed in time
    assert_woken_by_another_process(harness)


@pytest.mark.skipif(settings.DB_KIND != "sqlite", reason="the SQLite commit watcher")
def test_commit_in_another_process_wakes_the_supervisor_through_the_sqlite_watcher(
    harness: Harness, tandem_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tandem.brokers import sqlite_wake

    # No wake-up socket (as in a directory it cannot write to): the commit watcher alone.
    monkeypatch.setattr(sqlite_wake, "bind", lambda name: None)
    tandem_settings(poll_interval=3600)  # only the commit watcher can get it claimed in time
    assert_woken_by_another_process(harness)


def test_a_freed_concurrency_slot_is_claimed_for_without_a_poll(
    harness: Harness, tandem_settings
) -> None:
    """A claim that found its queue's keyed tasks waiting on their key's slot found "nothing
    more" (the pool need not claim again when a task ends): the ending that frees the slot must
    still get the next task claimed, not leave it waiting for a poll."""
    tandem_settings(poll_interval=3600)  # a poll would come too late
    supervisor = harness.supervisor(workers=2, listen=True)
    thread = harness.run_in_background(supervisor)
    wait_for(lambda: supervisor.pools[0].next_poll is not None, "the first (empty) claim")
    results = [keyed_sleep.enqueue(0.3) for _ in range(3)]
    wait_for(
        lambda: (
            TaskRecord.objects.filter(id__in=[r.id for r in results], status=SUCCESSFUL).count()
            == 3
        ),
        "the keyed tasks to run one after another",
        timeout=30,
    )
    supervisor.request_stop()
    thread.join(10)
    assert not thread.is_alive()


# -- retries, leases, recovery -----------------------------------------------------------------


def test_failed_attempts_go_back_to_ready_with_backoff_and_succeed_later(harness: Harness) -> None:
    clock = FrozenClock()
    result = flaky.enqueue("retried", 2)  # fails twice, then succeeds; max_attempts=3
    supervisor = harness.supervisor(workers=1, clock=clock)

    for attempt in (1, 2):
        assert supervisor.step() == 1
        harness.wait_for_outcomes(supervisor, 1)
        supervisor.step()
        row = record(result)
        assert (row.status, row.attempts, row.max_attempts) == (READY, attempt, 3)
        assert error_classes(row) == ["builtins.RuntimeError"] * attempt
        assert row.available_at > clock()  # backed off
        assert supervisor.step() == 0  # not claimable before the back-off has passed
        # The supervisor looks again at its next poll: let the clock pass both.
        clock.move_to(max(row.available_at, supervisor.pools[0].next_poll))

    assert supervisor.step() == 1
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    row = record(result)
    assert (row.status, row.return_value, row.attempts) == (SUCCESSFUL, 3, 3)
    assert len(row.errors) == 2
    assert Ledger.objects.filter(key="retried").count() == 3


@pytest.mark.usefixtures("threads")
def test_heartbeat_renews_the_leases_of_running_tasks(harness: Harness) -> None:
    clock = FrozenClock()
    broker = SpyBroker()
    result = gated.enqueue("lease")
    supervisor = harness.supervisor(workers=1, clock=clock, broker=broker)
    heartbeat = supervisor.heartbeat_every.total_seconds()

    supervisor.step()
    assert record(result).lease_expires_at == clock() + supervisor.lease
    first_lease = clock() + supervisor.lease

    clock.advance(heartbeat / 2)
    supervisor.step()
    assert "renew" not in broker.methods()  # no heartbeat due yet
    assert record(result).lease_expires_at == first_lease

    clock.advance(heartbeat)
    supervisor.step()
    assert broker.methods().count("renew") == 1
    assert record(result).lease_expires_at == clock() + supervisor.lease
    assert WorkerRecord.objects.get(id=supervisor.worker_id).last_heartbeat_at == clock()

    gate("lease").set()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    assert (record(result).status, record(result).return_value) == (SUCCESSFUL, True)


def test_a_round_with_nothing_to_settle_and_no_free_slot_opens_no_transaction(
    harness: Harness, tandem_settings
) -> None:
    """An enqueue while every worker is busy wakes the supervisor, but its round has nothing to
    write: no empty write transaction (on SQLite, the file's write lock) is opened for it."""
    tandem_settings(poll_interval=3600)
    busy = gated.enqueue("no-slot")
    supervisor = harness.supervisor(workers=1)
    assert supervisor.step() == 1
    assert supervisor.pools[0].free == 0
    opened = []
    transaction = supervisor.broker.transaction

    def counted() -> object:
        opened.append(True)
        return transaction()

    supervisor.broker.transaction = counted  # type: ignore[method-assign]
    waiting = add.enqueue(1, 2)  # a wake-up: the pool is dirty, but has no free slot

    assert supervisor.pools[0].dirty
    assert supervisor.step() == 0
    assert opened == []

    gate("no-slot").set()
    harness.wait_for_outcomes(supervisor, 1)
    assert supervisor.step() == 2  # settled the gated task, claimed the waiting one
    assert opened == [True]
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    assert record(busy).status == record(waiting).status == SUCCESSFUL


def test_expired_lease_of_a_dead_worker_is_recovered_at_start_then_run(harness: Harness) -> None:
    result = add.enqueue(1, 2)
    dead = "gone-host:4242:deadbeef"
    expired = timezone.now() - timedelta(minutes=5)
    TaskRecord.objects.filter(id=result.id).update(
        status=RUNNING,
        worker_id=dead,
        worker_ids=[dead],
        lease_expires_at=expired,
        started_at=expired,
        last_attempted_at=expired,
    )
    broker = SpyBroker()
    supervisor = harness.supervisor(workers=1, broker=broker, clock=FrozenClock())

    assert supervisor.step() == 1  # recovered, then claimed in the same first round
    assert [(r.id, r.status, r.worker_id) for r in broker.recovered] == [(result.id, READY, dead)]
    methods = broker.methods()
    assert methods.index("recover_expired") < methods.index("claim")
    assert record(result).worker_id == supervisor.worker_id

    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    row = record(result)
    assert (row.status, row.return_value, row.attempts) == (SUCCESSFUL, 3, 2)
    assert row.worker_ids == [dead, supervisor.worker_id]
    assert error_classes(row) == ["tandem.exceptions.WorkerLost"]
    assert dead in row.errors[0]["traceback"]


def test_task_recovered_by_a_later_heartbeat_is_claimed_without_waiting_for_a_poll(
    harness: Harness, tandem_settings
) -> None:
    tandem_settings(poll_interval=3600)
    result = add.enqueue(1, 2)
    dead = "gone-host:4242:deadbeef"
    TaskRecord.objects.filter(id=result.id).update(
        status=RUNNING,
        worker_id=dead,
        worker_ids=[dead],
        lease_expires_at=timezone.now() + timedelta(seconds=30),  # not expired yet
    )
    clock = FrozenClock()
    supervisor = harness.supervisor(workers=1, clock=clock)
    assert supervisor.step() == 0  # nothing to recover or claim; next poll in an hour

    clock.advance(60)  # the dead worker's lease has expired; a heartbeat is due
    assert supervisor.step() == 1  # recovered and claimed in the same round

    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    row = record(result)
    assert (row.status, row.attempts) == (SUCCESSFUL, 2)
    assert error_classes(row) == ["tandem.exceptions.WorkerLost"]


# -- stopping ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("threads")
def test_stop_once_drains_in_flight_tasks_and_claims_nothing_new(harness: Harness) -> None:
    running = gated.enqueue("drain")
    supervisor = harness.supervisor(workers=2, clock=FrozenClock())
    supervisor.step()
    assert record(running).status == RUNNING
    waiting = noop.enqueue()

    supervisor.request_stop()
    assert supervisor.stopping == 1
    supervisor.notify([])  # even with new work announced, a draining supervisor claims nothing
    assert supervisor.step() == 0
    assert not supervisor.finished()  # still one in flight
    assert record(waiting).status == READY

    gate("drain").set()
    harness.wait_for_outcomes(supervisor, 1)
    assert supervisor.step() == 1
    assert supervisor.finished()
    supervisor.close()
    assert (record(running).status, record(running).return_value) == (SUCCESSFUL, True)
    assert record(waiting).status == READY
    assert not WorkerRecord.objects.filter(id=supervisor.worker_id).exists()


@pytest.mark.usefixtures("threads")
def test_stop_once_lets_run_return_when_in_flight_tasks_finish(harness: Harness) -> None:
    result = gated.enqueue("drain-run")
    supervisor = harness.supervisor(workers=1)
    thread = harness.run_in_background(supervisor)
    wait_for(lambda: record(result).status == RUNNING, "the task to be claimed")

    supervisor.request_stop()
    gate("drain-run").set()
    thread.join(10)

    assert not thread.is_alive()
    assert (record(result).status, record(result).return_value) == (SUCCESSFUL, True)


@pytest.mark.usefixtures("threads")
def test_stop_twice_releases_in_flight_tasks_back_to_ready(harness: Harness) -> None:
    result = gated.enqueue("release")
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())
    supervisor.step()
    assert record(result).status == RUNNING

    supervisor.request_stop()
    supervisor.request_stop()
    assert supervisor.stopping == 2
    supervisor.step()
    assert supervisor.finished()
    supervisor.close()  # does not wait for the task that is still running

    row = record(result)
    assert (row.status, row.worker_id, row.lease_expires_at, row.attempts) == (READY, "", None, 1)
    assert error_classes(row) == ["tandem.exceptions.Released"]
    assert supervisor.worker_id in row.errors[0]["traceback"]


# -- limits and selection ----------------------------------------------------------------------


def test_max_tasks_stops_the_supervisor_after_that_many_tasks(harness: Harness) -> None:
    results = [noop.enqueue() for _ in range(5)]
    supervisor = harness.supervisor(workers=4, max_tasks=2)
    thread = harness.run_in_background(supervisor)
    thread.join(10)

    assert not thread.is_alive()
    assert (supervisor.claimed, supervisor.settled) == (2, 2)
    statuses = [record(r).status for r in results]
    assert sorted(statuses) == [READY] * 3 + [SUCCESSFUL] * 2


def test_queues_narrow_what_a_supervisor_claims(harness: Harness, drain) -> None:
    default = noop.enqueue()
    critical = critical_noop.enqueue()

    supervisor = drain(queues=["critical"], workers=1)

    assert supervisor.queues == ("critical",)
    assert record(critical).status == SUCCESSFUL
    assert record(default).status == READY


def test_unknown_queue_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        Harness().supervisor(queues=["nope"])
    assert str(excinfo.value) == (
        "Queue(s) 'nope' are served by no pool of TASKS['default']; "
        "known queues: critical, default, exports."
    )


# -- the task store failing --------------------------------------------------------------------


def test_store_error_during_settle_loses_no_outcome(harness: Harness) -> None:
    broker = SpyBroker(fail_settles=1)
    results = [add.enqueue(i, 1) for i in range(3)]
    supervisor = harness.supervisor(workers=3, broker=broker, clock=FrozenClock())
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 3)

    with pytest.raises(Exception, match="injected by the test"):
        supervisor.step()
    assert {record(r).status for r in results} == {RUNNING}
    assert supervisor.in_flight == 3

    assert supervisor.step() == 3
    first, second = broker.settlements
    assert [s.id for s in first] == [s.id for s in second]  # the same outcomes, written again
    assert [record(r).return_value for r in results] == [1, 2, 3]
    assert {record(r).status for r in results} == {SUCCESSFUL}
    assert supervisor.in_flight == 0


def test_outcome_the_store_rejects_fails_its_task_without_blocking_the_others(
    harness: Harness,
) -> None:
    results = [add.enqueue(i, 1) for i in range(3)]
    broker = SpyBroker(reject=frozenset({results[1].id}))
    supervisor = harness.supervisor(workers=3, broker=broker, clock=FrozenClock())
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 3)

    assert supervisor.step() == 3
    assert [record(r).status for r in results] == [SUCCESSFUL, FAILED, SUCCESSFUL]
    rejected = record(results[1])
    assert error_classes(rejected) == ["django.db.utils.DataError"]
    assert "cannot hold this value" in rejected.errors[0]["traceback"]
    assert (rejected.worker_id, rejected.lease_expires_at) == ("", None)
    assert supervisor.in_flight == 0


@pytest.mark.postgres
def test_return_value_postgresql_cannot_store_fails_only_that_task(harness: Harness) -> None:
    bad = return_nul.enqueue()
    good = add.enqueue(2, 2)
    supervisor = harness.supervisor(workers=2, clock=FrozenClock())
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 2)

    with capture(task_finished) as finished:
        assert supervisor.step() == 2
        supervisor.signals.flush()
    assert (record(good).status, record(good).return_value) == (SUCCESSFUL, 4)
    row = record(bad)
    assert (row.status, row.return_value) == (FAILED, None)
    assert error_classes(row) == ["django.db.utils.DataError"]
    # task_finished says what was stored: FAILED, with the store's error.
    signalled = {e["id"]: (e["status"], e["errors"]) for e in finished}
    assert signalled[good.id] == (SUCCESSFUL, [])
    status, [error] = signalled[bad.id]
    assert status == FAILED and "the task store rejected this attempt's outcome" in error


def test_run_retries_after_a_store_error_and_finishes_the_work(harness: Harness) -> None:
    broker = SpyBroker(fail_settles=1)
    results = [add.enqueue(i, 1) for i in range(3)]
    supervisor = harness.supervisor(workers=3, broker=broker, burst=True)
    thread = harness.run_in_background(supervisor)
    thread.join(10)

    assert not thread.is_alive()
    assert supervisor.store_errors == 1
    assert {record(r).status for r in results} == {SUCCESSFUL}
    assert sum(len(batch) for batch in broker.settlements[1:]) == 3


def test_done_and_busy_reach_the_registry_before_the_next_heartbeat(harness: Harness) -> None:
    from tandem.worker.supervisor import LIVE_COUNTS_INTERVAL

    clock = FrozenClock()
    supervisor = harness.supervisor(workers=2, clock=clock)
    gated_task = gated.enqueue("live-counts")
    noop.enqueue()
    supervisor.step()  # claims both; shows 2 busy at once

    worker = WorkerRecord.objects.get(id=supervisor.worker_id)
    assert (worker.tasks_done, sum(p["in_flight"] for p in worker.pools.values())) == (0, 2)

    harness.wait_for_outcomes(supervisor, 1)  # the noop finished
    clock.advance(LIVE_COUNTS_INTERVAL)  # far less than the heartbeat interval
    assert supervisor.heartbeat_every.total_seconds() > LIVE_COUNTS_INTERVAL
    supervisor.step()

    worker.refresh_from_db()
    assert (worker.tasks_done, sum(p["in_flight"] for p in worker.pools.values())) == (1, 1)
    gate("live-counts").set()
    harness.wait_for_outcomes(supervisor, 1)
    clock.advance(LIVE_COUNTS_INTERVAL)
    supervisor.step()
    worker.refresh_from_db()
    assert worker.tasks_done == 2
    assert TaskRecord.objects.get(id=gated_task.id).status == SUCCESSFUL

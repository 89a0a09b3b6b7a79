"""Enqueue inside ``transaction.atomic()``: the task and the caller's data commit together, and
no worker sees the task before the commit (the classic race)."""

from __future__ import annotations

import time

import pytest
from django.db import connection, transaction

import tandem
from tandem.brokers.base import SUCCESSFUL
from tandem.models import TaskRecord
from tandem.serialization import NotJSONError
from tests import tasks
from tests.models import Ledger
from tests.support.doubles import wait_for
from tests.support.harness import Harness

pytestmark = pytest.mark.django_db(transaction=True)


def test_task_loading_the_row_created_in_its_transaction_never_misses_it(
    harness: Harness,
) -> None:
    supervisor = harness.supervisor(workers=2, listen=True)
    harness.run_in_background(supervisor)
    results = []
    for i in range(30):
        with transaction.atomic():
            row = Ledger.objects.create(key=f"race-{i}")
            results.append(tasks.load_ledger.enqueue(row.pk))
            # Keep the transaction open while a worker looks: it must not see the task yet.
            time.sleep(0.01)
    wait_for(
        lambda: TaskRecord.objects.filter(status__in=["SUCCESSFUL", "FAILED"]).count() == 30,
        "30 tasks to finish",
    )
    for i, result in enumerate(results):
        result.refresh()
        assert (result.status, result.return_value) == (SUCCESSFUL, f"race-{i}"), result.errors


def test_a_worker_polling_all_along_claims_nothing_until_the_commit(
    harness: Harness, tandem_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race made deterministic: the transaction stays open until a live worker has looked
    for work while it was open — five whole claim rounds on PostgreSQL and MariaDB; on SQLite a
    round that waits for the write lock the open transaction holds.
    (On a store outside the transaction the same worker runs the task inside it and fails:
    test_redis_backend.py::test_a_plain_enqueue_inside_a_transaction_races_the_commit.)"""
    tandem_settings(pools={"default": {"workers": 1, "poll_interval": 0.02}})
    supervisor = harness.supervisor(workers=1, listen=True)
    rounds = {"begun": 0, "ended": 0}
    one_round = supervisor.step

    def counted_round() -> int:
        rounds["begun"] += 1
        done = one_round()
        rounds["ended"] += 1
        return done

    monkeypatch.setattr(supervisor, "step", counted_round)
    harness.run_in_background(supervisor)
    wait_for(lambda: rounds["ended"] > 0, "the supervisor's first round")
    with transaction.atomic():
        row = Ledger.objects.create(key="held-open")
        result = tasks.load_ledger.enqueue(row.pk)
        ended = rounds["ended"]
        if connection.vendor == "sqlite":
            # A round under way now waits for the write lock this transaction holds: it cannot
            # claim, nor end, before the commit.
            wait_for(lambda: rounds["begun"] > rounds["ended"], "a round during the transaction")
        else:
            wait_for(lambda: rounds["ended"] >= ended + 5, "five rounds during the transaction")
        claimed_inside = supervisor.claimed
    assert claimed_inside == 0
    wait_for(lambda: TaskRecord.objects.get(id=result.id).status == SUCCESSFUL, "the task")
    result.refresh()
    assert result.return_value == "held-open"


def test_a_rolled_back_enqueue_leaves_no_task() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.enqueue(1, 2)
        raise RuntimeError("the view failed")
    assert not TaskRecord.objects.exists()


def test_enqueue_on_commit_waits_for_the_commit() -> None:
    with transaction.atomic():
        tandem.enqueue_on_commit(tasks.add, (1, 2))
        assert not TaskRecord.objects.exists()
    [row] = TaskRecord.objects.all()
    assert (row.task_path, row.args) == ("tests.tasks.add", [1, 2])


def test_enqueue_on_commit_drops_nothing_but_a_rolled_back_task() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        tandem.enqueue_on_commit(tasks.add, (1, 2))
        raise RuntimeError("rolled back")
    assert not TaskRecord.objects.exists()


def test_enqueue_on_commit_checks_the_arguments_at_once() -> None:
    with (
        pytest.raises(NotJSONError, match=r"kwargs\['when'\] is a builtins.object"),
        transaction.atomic(),
    ):
        tandem.enqueue_on_commit(tasks.echo, (), {"when": object()})


def test_enqueue_on_commit_outside_a_transaction_enqueues_now() -> None:
    tandem.enqueue_on_commit(tasks.add, (), {"a": 1, "b": 2})
    assert TaskRecord.objects.get().kwargs == {"a": 1, "b": 2}


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's journal mode")
def test_a_supervisor_starting_during_a_write_waits_to_switch_sqlite_to_wal(
    harness: Harness,
) -> None:
    """Switching to WAL fails at once ("database is locked", no busy timeout) while another
    connection writes: ``prepare()`` retries instead of the worker dying at start."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=DELETE")
    supervisor = harness.supervisor(workers=1, listen=True)
    with transaction.atomic():
        row = Ledger.objects.create(key="before-wal")
        result = tasks.load_ledger.enqueue(row.pk)
        harness.run_in_background(supervisor)
        wait_for(lambda: supervisor._started, "the supervisor to start")
        time.sleep(0.3)  # prepare() meets the open write transaction
    wait_for(lambda: TaskRecord.objects.get(id=result.id).status == SUCCESSFUL, "the task")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"

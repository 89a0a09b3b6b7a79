"""MariaDB/MySQL deadlocks (error 1213): InnoDB rolls the victim's whole transaction back, so a
claim that owns its transaction runs it again (``database_store.retrying_deadlocks``), and a
supervisor's round that lost one runs again at once instead of backing off. The deadlock is
injected once at the cursor (``execute_wrapper``) into the statement named; nothing else is."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from tandem.brokers.base import READY, RUNNING, NewTask
from tandem.brokers.database import DatabaseBroker
from tandem.brokers.database_concurrency import SLOT_TABLE
from tandem.brokers.database_rows import TABLE
from tandem.brokers.database_store import DEADLOCK_TRIES
from tests.contract.conftest import T0, at, succeed
from tests.support.harness import Harness
from tests.tasks import noop

pytestmark = [pytest.mark.mariadb, pytest.mark.django_db(transaction=True)]

DEADLOCK = OperationalError(
    1213, "Deadlock found when trying to get lock; try restarting transaction"
)
LOCK_WAIT = OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction")

Push = Callable[..., NewTask]
GATE_TIMEOUT = 60  # liveness only: a broken gate fails the test instead of hanging it


@pytest.fixture
def broker() -> DatabaseBroker:
    return DatabaseBroker("default", store_clock=False)


@contextmanager
def failing(starts: str, error: Exception, times: int = 1) -> Iterator[list[str]]:
    """The first ``times`` statements starting with ``starts`` raise ``error`` (as the store's
    would: before they run); yields every statement so started, failed or not."""
    seen: list[str] = []

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any):
        if sql.startswith(starts):
            seen.append(sql)
            if len(seen) <= times:
                raise error
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield seen


def claim(broker: DatabaseBroker) -> list[str]:
    return [t.id for t in broker.claim(["default"], 10, "w1", at(60), T0)]


def test_a_keyed_claim_that_lost_a_deadlock_is_run_again_and_returns_its_tasks(
    broker: DatabaseBroker, push: Push, caplog: pytest.LogCaptureFixture
):
    keyed = push(concurrency_key="acct-1", concurrency_limit=1)
    plain = push()

    caplog.set_level(logging.DEBUG, logger="tandem.brokers.database_store")
    with failing(f"INSERT IGNORE INTO {SLOT_TABLE}", DEADLOCK) as inserts:
        assert claim(broker) == [keyed.id, plain.id]

    assert len(inserts) == 2  # the slot insert lost the deadlock, then ran in the second run
    assert (broker.get(keyed.id).status, broker.get(plain.id).status) == (RUNNING, RUNNING)
    assert broker.get(keyed.id).attempts == 1  # one attempt: the first run wrote nothing
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {SLOT_TABLE}")
        assert cursor.fetchone()[0] == 1
    assert "a claim lost a deadlock" in caplog.text
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "deadlock" in r.message)


def test_a_starvation_claim_that_lost_a_deadlock_is_run_again(broker: DatabaseBroker, push: Push):
    task = push()

    with failing(f"UPDATE {TABLE}", DEADLOCK) as updates:
        starved = broker.claim_starved(["default"], 10, "w1", at(60), T0, T0)

    assert [t.id for t in starved] == [task.id]
    assert len(updates) == 2


def test_a_claim_gives_up_after_its_runs(broker: DatabaseBroker, push: Push):
    task = push()

    with (
        failing(f"UPDATE {TABLE}", DEADLOCK, times=DEADLOCK_TRIES) as updates,
        pytest.raises(OperationalError),
    ):
        claim(broker)

    assert len(updates) == DEADLOCK_TRIES
    assert broker.get(task.id).status == READY


def test_an_error_other_than_a_deadlock_is_not_retried(broker: DatabaseBroker, push: Push):
    task = push(concurrency_key="acct-1", concurrency_limit=1)

    with (
        failing(f"INSERT IGNORE INTO {SLOT_TABLE}", LOCK_WAIT) as inserts,
        pytest.raises(OperationalError) as raised,
    ):
        claim(broker)

    assert raised.value.args[0] == 1205
    assert len(inserts) == 1
    assert broker.get(task.id).status == READY


def test_a_claim_inside_the_callers_transaction_is_not_retried(broker: DatabaseBroker, push: Push):
    """The deadlock rolled back the caller's writes too: only the caller may run them again."""
    task = push()

    with (
        failing(f"UPDATE {TABLE}", DEADLOCK) as updates,
        pytest.raises(OperationalError),
        transaction.atomic(),
    ):
        claim(broker)

    assert len(updates) == 1
    assert broker.get(task.id).status == READY


def test_a_claim_whose_commit_failed_is_not_retried(
    broker: DatabaseBroker, push: Push, monkeypatch: pytest.MonkeyPatch
):
    """An error from the commit leaves it unknown whether the claim committed."""
    push()
    connection.ensure_connection()
    commits: list[int] = []

    def commit() -> None:
        commits.append(1)
        raise DEADLOCK

    monkeypatch.setattr(connection, "_commit", commit)
    with (
        failing(f"UPDATE {TABLE}", DEADLOCK, times=0) as updates,
        pytest.raises(OperationalError),
    ):
        claim(broker)

    assert (len(commits), len(updates)) == (1, 1)


def test_a_supervisor_round_that_lost_a_deadlock_claims_at_once(harness: Harness):
    """The claim runs inside the round's transaction: the round is run again, the task is in
    flight after one ``step()``, and the supervisor neither backed off nor counted an outage."""
    result = noop.enqueue()
    supervisor = harness.supervisor(workers=1)

    with failing(f"UPDATE {TABLE} SET status", DEADLOCK) as updates:
        assert supervisor.step() == 1

    assert len(updates) == 2
    assert list(supervisor.pools[0].in_flight) == [result.id]
    assert supervisor.store_errors == 0


def test_a_supervisor_round_that_failed_otherwise_is_not_run_again(harness: Harness):
    noop.enqueue()
    supervisor = harness.supervisor(workers=1)

    with (
        failing(f"UPDATE {TABLE} SET status", LOCK_WAIT) as updates,
        pytest.raises(OperationalError),
    ):
        supervisor.step()

    assert len(updates) == 1
    assert supervisor.pools[0].in_flight == {}


def test_settling_a_keyed_task_does_not_wait_for_another_keys_settle(
    broker: DatabaseBroker, push: Push
):
    """A settle deletes its attempt's slot through the slot table's task index: a DELETE that
    scanned the table (MariaDB reads a row-constructor ``IN`` through no index) waited for every
    slot row another transaction held — settles of other keys, claims — and such waits are what
    deadlocks are made of. The first settle is held open by a gate; the second must not wait for
    it (a lock wait of any length fails it: ``innodb_lock_wait_timeout`` is 1 s)."""
    settles = []
    for worker, key in (("w1", "k1"), ("w2", "k2")):
        task = push(concurrency_key=key, concurrency_limit=4)
        assert [t.id for t in broker.claim(["default"], 1, worker, at(60), T0)] == [task.id]
        settles.append(succeed(task.id, worker, at(1), attempt=broker.get(task.id).attempt_token))
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_the_first_settle() -> None:
        try:
            with broker.transaction():
                broker.settle([settles[0]])
                held.set()
                assert release.wait(GATE_TIMEOUT)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()  # this thread's

    holder = threading.Thread(target=hold_the_first_settle)
    holder.start()
    try:
        assert held.wait(GATE_TIMEOUT)
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
        with broker.transaction():
            assert broker.settle([settles[1]]) == 1
    finally:
        release.set()
        holder.join(GATE_TIMEOUT)
    assert errors == []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {SLOT_TABLE}")
        assert cursor.fetchone()[0] == 0

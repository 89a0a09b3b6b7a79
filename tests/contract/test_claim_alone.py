"""A claim of plain tasks on PostgreSQL is ONE statement that commits on its own: in autocommit,
and as the first statement of the supervisor's round (``broker.transaction()``: no ``BEGIN``,
no ``COMMIT``); never inside a transaction of the caller's, which must be able to roll it back.
Its pick leaves paused queues out itself. Tasks with a concurrency key or a rate limit are
claimed in a transaction as before.

The behaviour is checked on every database; the statements sent (the wire protocol's ``Query``
messages, one round trip each) on PostgreSQL.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import pytest
from django.db import connection, transaction

from tandem.brokers import database_claims
from tandem.brokers.base import READY, RUNNING, NewTask
from tandem.brokers.database import DatabaseBroker
from tandem.models import ConcurrencySlot
from tests.contract.conftest import ALIAS, T0, at

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = at(60)
#: The statements sent are read from PostgreSQL's wire protocol (the PostgreSQL run only).
postgres_only = pytest.mark.postgres


class Rollback(Exception):
    pass


@pytest.fixture
def store() -> DatabaseBroker:
    return DatabaseBroker(ALIAS, store_clock=False)


@pytest.fixture
def put(store: DatabaseBroker, make_task: Callable[..., NewTask]) -> Callable[..., NewTask]:
    def push_one(**fields: object) -> NewTask:
        task = make_task(**fields)
        store.push([task])
        return task

    return push_one


@contextmanager
def sent() -> Iterator[list[str]]:
    """The statements sent on this thread's PostgreSQL connection in the block: the first word
    of each ``Query`` message (psycopg's client-side binding sends one per statement)."""
    connection.ensure_connection()
    fd, path = tempfile.mkstemp()
    words: list[str] = []
    pgconn = connection.connection.pgconn
    pgconn.trace(fd)
    try:
        yield words
    finally:
        pgconn.untrace()
        os.close(fd)
        with open(path) as trace:
            for line in trace:
                fields = line.split("\t")
                if len(fields) > 4 and fields[1] == "F" and fields[3] in ("Query", "Parse"):
                    words.append(fields[4].strip().strip('"').split()[0].upper())
        os.unlink(path)


def claim(store: DatabaseBroker, limit: int = 10, queues: list[str] | None = None) -> list[str]:
    claimed = store.claim(queues or ["default"], limit, "w1", LEASE, T0)
    return [t.id for t in claimed]


# -- one statement, committed on its own -------------------------------------------------------


@postgres_only
def test_a_claim_in_autocommit_is_one_statement(store, put):
    tasks = [put(), put()]

    with sent() as statements:
        ids = claim(store)

    assert ids == [t.id for t in tasks]
    assert statements == ["UPDATE"]


@postgres_only
def test_the_rounds_claim_is_one_statement_without_begin_or_commit(store, put):
    task = put()

    with sent() as statements, store.transaction():
        ids = claim(store)

    assert ids == [task.id]
    assert statements == ["UPDATE"]
    assert store.get(task.id).status == RUNNING


@postgres_only
def test_a_round_that_wrote_before_its_claim_claims_in_its_transaction(store, put):
    task = put()

    with sent() as statements, store.transaction():
        store.notify(["default"])
        assert claim(store) == [task.id]

    assert statements == ["BEGIN", "SELECT", "UPDATE", "COMMIT"]  # no separate paused read


def test_a_claim_after_a_write_in_the_round_rolls_back_with_the_round(store, put):
    task = put()

    with pytest.raises(Rollback), store.transaction():
        store.pause_queues(["exports"], T0)
        assert claim(store) == [task.id]
        raise Rollback

    assert store.get(task.id).status == READY
    assert store.paused_queues() == {}


def test_the_round_is_a_transaction_again_after_its_claim(store, put):
    """The claim committed alone; what the round writes after it is still one transaction."""
    task = put()

    with store.transaction():
        assert claim(store) == [task.id]
        store.pause_queues(["exports"], T0)
        with connection.cursor() as cursor:  # the pause is in an open transaction
            cursor.execute(
                "SELECT txid_current_if_assigned() IS NOT NULL"
                if connection.vendor == "postgresql"
                else "SELECT 1"
            )
            assert cursor.fetchone()[0]

    assert list(store.paused_queues()) == ["exports"]
    assert store.get(task.id).status == RUNNING


def test_a_round_that_fails_after_its_claim_gives_the_claimed_tasks_back(store, put):
    """As its rollback would have: READY again at once (on PostgreSQL the claim had committed
    alone, and is given back), and what the round wrote after it rolled back."""
    task = put()

    with pytest.raises(Rollback), store.transaction():
        assert claim(store) == [task.id]
        store.pause_queues(["exports"], T0)
        raise Rollback

    assert store.paused_queues() == {}
    assert store.get(task.id).status == READY
    assert claim(store) == [task.id]


# -- never in the caller's transaction ---------------------------------------------------------


def test_a_claim_in_the_callers_transaction_rolls_back_with_it(store, put):
    task = put()

    with pytest.raises(Rollback), transaction.atomic():
        assert claim(store) == [task.id]
        raise Rollback

    assert store.get(task.id).status == READY


def test_a_round_inside_the_callers_transaction_rolls_back_with_it(store, put):
    task = put()

    with pytest.raises(Rollback), transaction.atomic(), store.transaction():
        assert claim(store) == [task.id]
        raise Rollback

    assert store.get(task.id).status == READY


@postgres_only
def test_a_claim_in_the_callers_transaction_is_sent_in_it(store, put):
    put()

    with sent() as statements, transaction.atomic():
        claim(store)

    assert statements == ["BEGIN", "UPDATE", "COMMIT"]


# -- paused queues -----------------------------------------------------------------------------


@pytest.mark.parametrize("in_round", [False, True])
def test_the_claim_leaves_paused_queues_out(store, put, in_round):
    paused = put(queue_name="exports", priority=9)
    other = put(queue_name="default")
    store.pause_queues(["exports"], T0)

    with store.transaction() if in_round else nullcontext():
        ids = claim(store, queues=["exports", "default"])

    assert ids == [other.id]
    assert store.get(paused.id).status == READY
    assert claim(store, queues=["exports"]) == []

    store.resume_queues(["exports"])
    assert claim(store, queues=["exports", "default"]) == [paused.id]


def test_a_pause_of_another_backend_is_not_this_ones(store, put):
    task = put(queue_name="exports")
    DatabaseBroker("other", store_clock=False).pause_queues(["exports"], T0)

    assert claim(store, queues=["exports"]) == [task.id]


# -- keys and rates: claimed in a transaction --------------------------------------------------


def test_a_keyed_task_picked_alone_is_claimed_with_its_slot_in_claim_order(store, put):
    first = put(priority=5, concurrency_key="acct", concurrency_limit=1)
    waiting = put(priority=5, concurrency_key="acct", concurrency_limit=1)
    plain = [put(), put()]

    ids = claim(store, limit=3)

    # As in a claim of one transaction: the waiting task took a place of the pick.
    assert ids == [first.id, plain[0].id]
    assert store.get(waiting.id).status == READY  # its key is full
    assert claim(store, limit=3) == [plain[1].id]
    assert ConcurrencySlot.objects.filter(task_id=first.id).count() == 1


def test_a_rate_limited_task_picked_alone_is_claimed_within_its_rate(store, put):
    rated = [put(priority=5, rate_limit="1/m") for _ in range(2)]
    plain = put()

    ids = claim(store, limit=3)

    assert ids == [rated[0].id, plain.id]
    assert store.get(rated[1].id).status == READY


@postgres_only
def test_after_a_keyed_pick_the_pools_claims_run_in_a_transaction_for_a_while(
    store, put, monkeypatch
):
    put(concurrency_key="acct")
    with sent() as statements:
        claim(store)
    assert statements[0] == "UPDATE" and "BEGIN" in statements  # alone, then the keyed claim

    put()
    with sent() as statements:
        claim(store)
    assert statements[0] == "BEGIN"

    monkeypatch.setattr(database_claims, "HELD_PAUSE", 0.0)
    store._claims_held.clear()
    put()
    with sent() as statements:
        claim(store)
    assert statements == ["UPDATE"]


@postgres_only
def test_a_pool_rate_claims_in_a_transaction(store, put):
    task = put()

    with sent() as statements:
        claimed = store.claim(["default"], 10, "w1", LEASE, T0, rate_limit="100/s")

    assert [t.id for t in claimed] == [task.id]
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"

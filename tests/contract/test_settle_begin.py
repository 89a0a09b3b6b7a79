"""PostgreSQL: a settle that is the first statement of a transaction carries the ``BEGIN``
itself (``PostgreSQLDialect._begun_by``) instead of psycopg sending it alone first — and the
transaction is still one: what follows is in it, a rollback undoes the settle, and psycopg is
back to its own ways once the transaction ended."""

from __future__ import annotations

import os
import tempfile

import pytest
from django.db import connection, transaction

from tandem.brokers.base import RUNNING, SUCCESSFUL
from tandem.brokers.database import DatabaseBroker
from tandem.models import TaskRecord
from tests.contract.conftest import ALIAS, at, succeed

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class Boom(Exception):
    pass


@pytest.fixture
def running(make_task):  # type: ignore[no-untyped-def]
    """A broker and one task it claimed (RUNNING as ``w1``)."""
    broker = DatabaseBroker(ALIAS, store_clock=False)
    broker.push([make_task()])
    [claimed] = broker.claim(["default"], 1, "w1", at(60), at(0))
    return broker, claimed


def sent(body) -> list[str]:  # type: ignore[no-untyped-def]
    """The simple-protocol messages the connection sent while ``body()`` ran (libpq's trace)."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        try:
            body()
        finally:
            pgconn.untrace()
        os.fsync(trace.fileno())
        trace.seek(0)
        lines = trace.read().splitlines()
    return [
        line.split("\tQuery\t", 1)[1].strip(' "')
        for line in lines
        if "\tF\t" in line and "\tQuery\t" in line
    ]


def test_the_first_statement_of_a_transaction_carries_the_begin(running, make_task) -> None:  # type: ignore[no-untyped-def]
    broker, claimed = running

    def settle_then_push() -> None:
        with transaction.atomic():
            broker.settle([succeed(claimed.id, "w1", at(1), attempt=claimed.attempt_token)])
            broker.push([make_task()])

    messages = sent(settle_then_push)

    assert messages[0].startswith("BEGIN; UPDATE"), messages
    assert "BEGIN" not in messages[1:], messages
    assert messages[-1] == "COMMIT", messages
    assert broker.get(claimed.id).status == SUCCESSFUL
    assert connection.get_autocommit() and connection.connection.autocommit


def test_a_rollback_undoes_a_settle_that_began_the_transaction(running, make_task) -> None:  # type: ignore[no-untyped-def]
    broker, claimed = running
    before = TaskRecord.objects.count()

    with pytest.raises(Boom), transaction.atomic():
        broker.settle([succeed(claimed.id, "w1", at(1), attempt=claimed.attempt_token)])
        broker.push([make_task()])
        raise Boom

    assert broker.get(claimed.id).status == RUNNING
    assert TaskRecord.objects.count() == before

    def update() -> None:
        with transaction.atomic():
            TaskRecord.objects.filter(id=claimed.id).update(priority=3)

    messages = sent(update)  # psycopg begins the next transaction itself again
    assert (messages[0], messages[-1], len(messages)) == ("BEGIN", "COMMIT", 3), messages
    assert TaskRecord.objects.get(id=claimed.id).priority == 3


def test_a_settle_in_a_transaction_begun_already_sends_no_begin(running) -> None:  # type: ignore[no-untyped-def]
    broker, claimed = running

    def read_then_settle() -> None:
        with transaction.atomic():
            TaskRecord.objects.filter(id=claimed.id).exists()
            broker.settle([succeed(claimed.id, "w1", at(1), attempt=claimed.attempt_token)])

    messages = sent(read_then_settle)

    assert messages[0] == "BEGIN", messages  # psycopg's own, before the read
    assert [m for m in messages if "BEGIN" in m] == ["BEGIN"], messages
    assert broker.get(claimed.id).status == SUCCESSFUL


def test_manual_transactions_are_left_to_psycopg(running) -> None:  # type: ignore[no-untyped-def]
    """With autocommit off by the caller, the outermost ``atomic`` neither commits nor turns
    autocommit back on: the settle must not begin the transaction itself."""
    broker, claimed = running
    transaction.set_autocommit(False)
    try:
        with transaction.atomic():
            broker.settle([succeed(claimed.id, "w1", at(1), attempt=claimed.attempt_token)])
        assert not connection.connection.autocommit
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)

    assert broker.get(claimed.id).status == RUNNING

"""PostgreSQL: an enqueue is one statement (the ``INSERT`` and its ``pg_notify``), and its
wake-up reaches listening supervisors only when the enqueuing transaction commits — never for a
rolled-back one, never before the commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection, transaction

from tandem.brokers.database import DatabaseBroker
from tandem.brokers.listeners import NOTIFY_CHANNEL, connection_kwargs
from tests.contract.conftest import ALIAS
from tests.contract.test_claim_alone import sent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class Rollback(Exception):
    pass


@pytest.fixture
def listener() -> Iterator[object]:
    import psycopg

    with psycopg.connect(**connection_kwargs("default")) as conn:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        yield conn


def payloads(listener: object, timeout: float = 0.3) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=timeout)]  # type: ignore[attr-defined]


def test_an_enqueue_in_autocommit_is_one_statement_and_wakes(make_task, listener):
    store = DatabaseBroker(ALIAS, store_clock=False)

    with sent() as statements:
        store.push_and_notify([make_task()], ["default"])

    assert statements == ["WITH"]  # the INSERT and its pg_notify, no BEGIN/COMMIT
    assert payloads(listener) == [f"{ALIAS}:default"]


def test_an_enqueue_in_a_transaction_wakes_only_at_its_commit(make_task, listener):
    store = DatabaseBroker(ALIAS, store_clock=False)

    with transaction.atomic():
        store.push_and_notify([make_task()], ["default"])
        assert payloads(listener) == []  # not before the commit

    assert payloads(listener) == [f"{ALIAS}:default"]


def test_a_rolled_back_enqueue_wakes_nobody(make_task, listener):
    store = DatabaseBroker(ALIAS, store_clock=False)

    with pytest.raises(Rollback), transaction.atomic():
        store.push_and_notify([make_task()], ["default"])
        raise Rollback

    assert payloads(listener) == []
    assert connection.vendor == "postgresql"

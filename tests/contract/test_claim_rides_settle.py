"""A round's claim rides in its settle's message (PostgreSQL): announced before the settle
(``DatabaseClaims.claim_ahead``), sent after the settle's ``UPDATE`` (and its workflow probe) in
the same message, and taken by the round's claim with the same arguments — a round of settle
and claim is that message and its ``COMMIT``, where it was three round trips. The claim is the
same statement with the same guards: a fresh attempt token, ``SKIP LOCKED``, the round's
transaction (a rollback undoes it with the settle). A ride never taken rolls the round back
rather than leave its rows RUNNING with nobody to run them.

The statements sent (the wire protocol's ``Query`` messages, one round trip each) are read on
PostgreSQL; the other stores announce nothing and claim as before.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest
from django.db import connection

from tandem.brokers.base import READY, RUNNING, SUCCESSFUL, NewTask, Settlement
from tandem.brokers.database import DatabaseBroker
from tests.contract.conftest import ALIAS, T0, at, succeed
from tests.contract.test_settle_begin import sent

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = at(60)


class Rollback(Exception):
    pass


def done(task) -> Settlement:  # type: ignore[no-untyped-def]
    """The SUCCESSFUL ending of ``task``'s attempt, holding no slot (as the supervisor's)."""
    ending = succeed(task.id, "w1", at(1), attempt=task.attempt_token)
    return dataclasses.replace(ending, holds_slot=False)


@pytest.fixture
def store() -> DatabaseBroker:
    return DatabaseBroker(ALIAS, store_clock=False)


@pytest.fixture
def running(store: DatabaseBroker, make_task: Callable[..., NewTask]):  # type: ignore[no-untyped-def]
    """Four READY tasks, the first claimed by ``w1``; (the claimed task, the other three)."""
    tasks = [make_task() for _ in range(4)]
    store.push(tasks)
    [claimed] = store.claim(["default"], 1, "w1", LEASE, T0)
    assert claimed.id == tasks[0].id
    return claimed, [t.id for t in tasks[1:]]


@pytest.mark.postgres
def test_the_rounds_settle_and_claim_are_one_message_and_its_commit(store, running) -> None:  # type: ignore[no-untyped-def]
    claimed, ready = running
    got = []

    def round_() -> None:
        with store.transaction():
            assert store.claim_ahead(["default"], 2, "w1", LEASE, T0)
            store.settle([done(claimed)])
            got.extend(store.claim(["default"], 2, "w1", LEASE, T0))

    messages = sent(round_)

    assert len(messages) == 2, messages
    first = messages[0].split("; ")
    assert first[0] == "BEGIN" and first[1].startswith("UPDATE tandem_taskrecord AS t"), first
    assert first[-1].startswith("UPDATE tandem_taskrecord SET"), first  # the claim, last
    assert messages[1] == "COMMIT"
    assert [t.id for t in got] == ready[:2]
    assert store.get(claimed.id).status == SUCCESSFUL
    for task in got:
        stored = store.get(task.id)
        assert (stored.status, stored.worker_id) == (RUNNING, "w1")
        assert stored.attempt_token == task.attempt_token != claimed.attempt_token
    assert store.get(ready[2]).status == READY


@pytest.mark.postgres
def test_a_ridden_claim_rolls_back_with_its_round(store, running) -> None:  # type: ignore[no-untyped-def]
    claimed, ready = running

    with pytest.raises(Rollback), store.transaction():
        assert store.claim_ahead(["default"], 3, "w1", LEASE, T0)
        store.settle([done(claimed)])
        assert len(store.claim(["default"], 3, "w1", LEASE, T0)) == 3
        raise Rollback

    assert store.get(claimed.id).status == RUNNING
    assert [store.get(i).status for i in ready] == [READY] * 3


@pytest.mark.postgres
def test_a_ride_nobody_takes_rolls_the_round_back(store, running) -> None:  # type: ignore[no-untyped-def]
    """A claim with other arguments does not take it: the round fails rather than commit rows
    claimed for nobody."""
    claimed, ready = running

    with pytest.raises(RuntimeError, match="never taken"), store.transaction():
        assert store.claim_ahead(["default"], 2, "w1", LEASE, T0)
        store.settle([done(claimed)])
        assert len(store.claim(["default"], 1, "w1", LEASE, T0)) == 1  # another limit

    assert store.get(claimed.id).status == RUNNING
    assert [store.get(i).status for i in ready] == [READY] * 3
    assert connection.get_autocommit() and not connection.in_atomic_block


@pytest.mark.postgres
def test_a_ride_skips_rows_another_transaction_holds(store, running) -> None:  # type: ignore[no-untyped-def]
    claimed, ready = running
    other = connection.copy()
    try:
        other.connect()
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT id FROM tandem_taskrecord WHERE id = %s FOR UPDATE", [ready[0]])
            with store.transaction():
                assert store.claim_ahead(["default"], 3, "w1", LEASE, T0)
                store.settle([done(claimed)])
                got = store.claim(["default"], 3, "w1", LEASE, T0)
            cursor.execute("ROLLBACK")
    finally:
        other.close()

    assert [t.id for t in got] == ready[1:]


def test_no_ride_outside_a_round_or_off_postgresql(store, running) -> None:  # type: ignore[no-untyped-def]
    """Outside the supervisor's round nothing is announced; in a round, only on PostgreSQL.
    Where nothing rode, the round settles and claims as before."""
    claimed, ready = running
    assert not store.claim_ahead(["default"], 2, "w1", LEASE, T0)

    with store.transaction():
        rides = store.claim_ahead(["default"], 2, "w1", LEASE, T0, rate_limit="5/s")
        assert not rides  # a pool with a rate limit reads its window first
        store.settle([done(claimed)])
        got = store.claim(["default"], 2, "w1", LEASE, T0)

    assert [t.id for t in got] == ready[:2]
    assert store.get(claimed.id).status == SUCCESSFUL

    with store.transaction():
        rides = store.claim_ahead(["default"], 1, "w1", LEASE, T0)
        assert rides == (connection.vendor == "postgresql")
        [task] = store.claim(["default"], 1, "w1", LEASE, T0)  # (no settle: claimed itself)
    assert task.id == ready[2]
    assert store.get(task.id).status == RUNNING


@pytest.mark.postgres
def test_the_settles_workflow_probe_is_one_statement_text_whatever_the_batch(
    store: DatabaseBroker, make_task: Callable[..., NewTask]
) -> None:
    """The probe of the finished tasks' edges takes their ids as ONE array (``any_id``), not a
    parameter per id: the same statement text for any batch, nothing per id for psycopg."""
    tasks = [make_task() for _ in range(3)]
    store.push(tasks)
    claimed = store.claim(["default"], 3, "w1", LEASE, T0)
    probes = []
    for batch in (claimed[:1], claimed[1:]):
        messages = sent(lambda batch=batch: store.settle([done(t) for t in batch]))
        [probe] = [
            part for m in messages for part in m.split("; ") if "tandem_taskdependency" in part
        ]
        probes.append(probe)

    shapes = [re.sub(r"'\{[^}]*\}'", "'{ids}'", probe) for probe in probes]  # as bound
    assert shapes[0] == shapes[1]
    assert "parent_id = ANY('{ids}'::uuid[])" in shapes[0]
    assert [store.get(t.id).status for t in claimed] == [SUCCESSFUL] * 3

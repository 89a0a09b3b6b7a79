"""Leases on the store's clock: a host whose clock is wrong cannot shorten or stretch a lease.

The brokers here measure leases as production does: on PostgreSQL/MariaDB server time and Redis
``TIME``. SQLite (one host) and the memory twin use the caller's clock, and say so.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from tandem.brokers.base import RUNNING, Broker
from tandem.brokers.database import DatabaseBroker
from tandem.brokers.memory import MemoryBroker
from tandem.brokers.redis import RedisBroker
from tests.contract.conftest import ALIAS
from tests.support import redis_store

pytestmark = pytest.mark.django_db

LEASE = timedelta(seconds=60)
#: A host clock far off the store's: a day ahead, or behind.
SKEWS = [timedelta(days=1), -timedelta(days=1)]


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mariadb),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def store_broker(request: pytest.FixtureRequest) -> Broker:
    """A broker with leases on its store's clock: the database of this run, or Redis."""
    if request.param == "redis":
        client = redis_store.client()  # fails (never skips) without Redis
        request.addfinalizer(lambda: redis_store.delete_keys(client))
        return RedisBroker(ALIAS, client, prefix=redis_store.PREFIX)
    assert connection.vendor == request.param  # the markers select the run of this database
    return DatabaseBroker(ALIAS)


def real_now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize("skew", SKEWS, ids=["ahead", "behind"])
def test_a_claim_leases_on_the_store_clock_whatever_the_hosts_clock(store_broker, make_task, skew):
    store_broker.push([make_task(enqueued_at=real_now() - timedelta(days=2))])
    host_now = real_now() + skew

    before = real_now()
    [task] = store_broker.claim(["default"], 1, "w1", host_now + LEASE, host_now)
    after = real_now()

    assert task.status == RUNNING
    # The lease's length came from the host; its start from the store (this machine's clock
    # here: the stores run on loopback). A second of slack for the round trip.
    assert before + LEASE - timedelta(seconds=1) <= task.lease_expires_at
    assert task.lease_expires_at <= after + LEASE + timedelta(seconds=1)
    assert store_broker.get(task.id).lease_expires_at == task.lease_expires_at


@pytest.mark.parametrize("skew", SKEWS, ids=["ahead", "behind"])
def test_renew_extends_from_the_store_clock(store_broker, make_task, skew):
    store_broker.push([make_task(enqueued_at=real_now() - timedelta(days=2))])
    [task] = store_broker.claim(["default"], 1, "w1", real_now() + LEASE, real_now())
    host_now = real_now() + skew

    before = real_now()
    held = store_broker.renew("w1", {task.id: task.attempt_token}, host_now + 2 * LEASE, host_now)

    assert held == {task.id}
    lease = store_broker.get(task.id).lease_expires_at
    assert before + 2 * LEASE - timedelta(seconds=1) <= lease <= real_now() + 2 * LEASE


def test_a_host_clock_ahead_does_not_recover_live_leases(store_broker, make_task):
    """The skewed-recoverer hole: a host a day ahead sees every lease as long expired."""
    store_broker.push([make_task(enqueued_at=real_now() - timedelta(days=2))])
    [task] = store_broker.claim(["default"], 1, "w1", real_now() + LEASE, real_now())

    assert store_broker.recover_expired(real_now() + timedelta(days=1), 3) == []
    assert store_broker.get(task.id).status == RUNNING


def test_a_lease_expired_on_the_store_clock_is_recovered_whatever_the_hosts_clock(
    store_broker, make_task
):
    store_broker.push([make_task(enqueued_at=real_now() - timedelta(days=2))])
    now = real_now()
    # A lease of minus one second: already over on the store's clock.
    [task] = store_broker.claim(["default"], 1, "w1", now - timedelta(seconds=1), now)

    recovered = store_broker.recover_expired(real_now() - timedelta(days=1), 3)

    assert [r.id for r in recovered] == [task.id]


def test_sqlite_and_the_memory_twin_lease_on_the_callers_clock(make_task):
    """One host: the caller's clock is the store's. Stated, and shown."""
    broker = MemoryBroker(ALIAS)
    assert broker.store_clock is False
    broker.push([make_task(enqueued_at=real_now() - timedelta(days=2))])
    now = real_now() + timedelta(days=1)
    [task] = broker.claim(["default"], 1, "w1", now + LEASE, now)
    assert task.lease_expires_at == now + LEASE
    if connection.vendor == "sqlite":
        sqlite = DatabaseBroker(ALIAS)
        assert sqlite._server_now() is None

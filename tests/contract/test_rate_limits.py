"""Rate limits (a task's ``rate_limit``, a pool's ``rate_limit`` option) on every broker: at most
N starts in any window, counted in the store inside the claim; a task over its rate waits READY,
no attempt counted, without holding back other work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from tandem import rates
from tandem.brokers.base import READY, RUNNING, Broker, NewTask
from tandem.brokers.database import DatabaseBroker
from tandem.brokers.redis import RedisBroker
from tests.contract.conftest import ALIAS, T0, at, succeed

pytestmark = pytest.mark.django_db

Push = Callable[..., NewTask]
RATED = "tests.tasks.rated"


def rated(push: Push, rate: str = "2/s", **fields: Any) -> NewTask:
    return push(task_path=RATED, rate_limit=rate, **fields)


def claim_ids(
    broker: Broker, limit: int = 10, now: float = 0, worker: str = "w1", **options: Any
) -> list[str]:
    return [
        t.id for t in broker.claim(["default"], limit, worker, at(now + 60), at(now), **options)
    ]


def test_at_most_n_starts_per_window_and_the_rest_wait_ready(broker: Broker, push: Push):
    tasks = [rated(push) for _ in range(5)]
    plain = push()

    assert claim_ids(broker) == [tasks[0].id, tasks[1].id, plain.id]
    assert claim_ids(broker, now=0.5, worker="w2") == []
    for waiting in tasks[2:]:
        stored = broker.get(waiting.id)
        assert (stored.status, stored.attempts, stored.worker_id) == (READY, 0, "")
    # A start counts while it is younger than the window: at +1 s both have left it.
    assert claim_ids(broker, now=1, worker="w2") == [tasks[2].id, tasks[3].id]
    assert claim_ids(broker, now=1.999, worker="w2") == []
    assert claim_ids(broker, now=2, worker="w2") == [tasks[4].id]


def test_the_stored_task_keeps_its_rate(broker: Broker, push: Push):
    assert broker.get(rated(push, "30/m").id).rate_limit == "30/m"
    assert broker.get(push().id).rate_limit is None


def test_finishing_frees_no_start(broker: Broker, push: Push):
    """Unlike a concurrency slot, a start stays in the window after its task ends."""
    first, second = rated(push, "1/m"), rated(push, "1/m")
    assert claim_ids(broker) == [first.id]
    assert broker.settle([succeed(first.id, "w1", at(1))]) == 1

    assert claim_ids(broker, now=59) == []
    assert claim_ids(broker, now=60) == [second.id]


def test_tasks_over_their_rate_do_not_hold_back_other_work(broker: Broker, push: Push):
    urgent = [rated(push, "1/h", priority=10) for _ in range(6)]
    plain = [push(), push()]

    # One claim: the waiting tasks ahead in claim order leave no free place empty.
    assert claim_ids(broker, limit=3) == [urgent[0].id, plain[0].id, plain[1].id]
    assert all(broker.get(t.id).status == READY for t in urgent[1:])
    later = push()
    assert claim_ids(broker, limit=1, worker="w2") == [later.id]


def test_each_task_path_has_its_own_window(broker: Broker, push: Push):
    a = [rated(push, "1/s") for _ in range(2)]
    b = [push(task_path="tests.tasks.other", rate_limit="1/s") for _ in range(2)]

    assert claim_ids(broker) == [a[0].id, b[0].id]


def test_a_pool_rate_counts_every_task_of_its_queues(broker: Broker, push: Push):
    tasks = [push() for _ in range(4)] + [rated(push, "10/s")]

    assert claim_ids(broker, rate_limit="3/s") == [t.id for t in tasks[:3]]
    assert claim_ids(broker, now=0.9, rate_limit="3/s") == []
    assert claim_ids(broker, now=1, rate_limit="3/s") == [tasks[3].id, tasks[4].id]


def test_the_starvation_claim_keeps_the_rates(broker: Broker, push: Push):
    tasks = [rated(push, "1/s") for _ in range(2)]
    plain = push()

    def starved(now: float, **options: Any) -> list[str]:
        claimed = broker.claim_starved(
            ["default"], 10, "w1", at(now + 60), at(now), at(now), **options
        )
        return [t.id for t in claimed]

    assert starved(0) == [tasks[0].id, plain.id]
    assert starved(0.5) == []
    assert starved(1, rate_limit="1/m") == [tasks[1].id]
    other = push()
    assert starved(2, rate_limit="1/m") == []  # the pool's minute is used up
    assert broker.get(other.id).status == READY


def test_a_rate_and_a_concurrency_key_both_hold(broker: Broker, push: Push):
    tasks = [rated(push, "2/s", concurrency_key="k", concurrency_limit=1) for _ in range(3)]

    assert claim_ids(broker) == [tasks[0].id]
    broker.settle([succeed(tasks[0].id, "w1", at(0.1))])
    assert claim_ids(broker, now=0.1) == [tasks[1].id]
    broker.settle([succeed(tasks[1].id, "w1", at(0.2))])
    assert claim_ids(broker, now=0.2) == []  # the slot is free, the rate is not
    assert claim_ids(broker, now=1) == [tasks[2].id]


def test_rate_limited_shows_full_windows(broker: Broker, push: Push):
    for _ in range(3):
        rated(push, "2/s")
    assert broker.rate_limited(at(0)) == {}

    claim_ids(broker)

    full = broker.rate_limited(at(0.5))
    assert list(full) == [rates.task_key(RATED)]
    assert abs((full[rates.task_key(RATED)] - at(1)).total_seconds()) < 0.01
    assert broker.rate_limited(at(1)) == {}


def sliding_windows_hold(starts: list[float], count: int, window: float) -> bool:
    """No window ``[t, t + window)`` opening at a start holds more than ``count`` starts."""
    starts = sorted(starts)
    return all(sum(1 for s in starts if t <= s < t + window) <= count for t in starts)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_claimers_keep_the_rate_in_every_window(broker: Broker, make_task):
    """Two threads claim at each step of a shared clock (0.1 s apart, 3 s in all); the ledger
    of starts, measured in sliding windows, never holds more than N in one second.

    transaction=True: each thread has its own connection and sees only committed rows.
    """
    tasks = [make_task(task_path=RATED, rate_limit="5/s") for _ in range(30)]
    tasks += [make_task() for _ in range(10)]
    broker.push(tasks)
    threads, steps = 2, 30
    barrier = threading.Barrier(threads, timeout=60)
    ledger: list[tuple[float, str, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(worker_id: str) -> None:
        try:
            for n in range(steps):
                now = n / 10
                barrier.wait()
                batch = broker.claim(["default"], 3, worker_id, at(now + 60), at(now))
                with lock:
                    ledger.extend((now, t.task_path, t.id) for t in batch)
                for task in batch:
                    broker.settle([succeed(task.id, worker_id, at(now))])
        except BaseException as exc:  # a failing thread must fail the test, not hang it
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    workers = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    ids = [task_id for _, _, task_id in ledger]
    assert len(ids) == len(set(ids))  # each started once
    starts = [now for now, path, _ in ledger if path == RATED]
    assert sliding_windows_hold(starts, 5, 1.0), sorted(starts)
    assert len(starts) == 15  # 5 in each of the 3 seconds: waiting is never a lost start
    assert {i for _, path, i in ledger if path != RATED} == {
        t.id for t in tasks if t.rate_limit is None
    }
    waiting = [broker.get(t.id) for t in tasks if t.id not in set(ids)]
    assert all((t.status, t.attempts) == (READY, 0) for t in waiting)


@pytest.fixture(params=["database", pytest.param("redis", marks=pytest.mark.redis)])
def store_clock_broker(request: pytest.FixtureRequest) -> Broker:
    if request.param == "redis":
        from tests.support import redis_store

        client = redis_store.client()
        request.addfinalizer(lambda: redis_store.delete_keys(client))
        return RedisBroker(ALIAS, client, prefix=redis_store.PREFIX, store_clock=True)
    return DatabaseBroker(ALIAS, store_clock=True)


def test_windows_run_on_the_store_clock(store_clock_broker: Broker, make_task):
    """With leases on the store's clock the window is too: a caller's clock far off changes
    nothing (two claims well inside one minute of store time)."""
    broker = store_clock_broker
    if isinstance(broker, DatabaseBroker) and connection.vendor == "sqlite":
        pytest.skip("SQLite is one host: its windows are on the caller's clock")
    now = datetime.now(UTC)
    broker.push(
        [
            make_task(task_path=RATED, rate_limit="2/m", enqueued_at=now - (at(10) - T0))
            for _ in range(3)
        ]
    )

    first = broker.claim(["default"], 10, "w1", now + (at(60) - T0), now)
    later = now + (at(3600) - T0)  # an hour ahead on the caller's clock
    second = broker.claim(["default"], 10, "w2", later + (at(60) - T0), later)

    assert (len(first), len(second)) == (2, 0)
    assert all(t.status == RUNNING for t in first)

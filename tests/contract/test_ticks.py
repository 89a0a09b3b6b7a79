"""fire_tick and last_tick: each tick of a schedule enqueues exactly once, per backend."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from tandem.brokers.base import READY
from tests.contract.conftest import ALIAS, T0, at, succeed

pytestmark = pytest.mark.django_db


def test_a_schedule_never_fired_has_no_last_tick(broker):
    assert broker.last_tick("nightly") is None


def test_the_first_fire_of_a_tick_stores_its_task(broker, make_task):
    task = make_task(task_path="tests.tasks.echo", args=["tick"], queue_name="exports")

    assert broker.fire_tick("nightly", T0, task) == task.id

    stored = broker.get(task.id)
    assert (stored.status, stored.task_path, stored.args, stored.queue_name, stored.backend) == (
        READY,
        "tests.tasks.echo",
        ["tick"],
        "exports",
        ALIAS,
    )
    assert broker.last_tick("nightly") == T0  # microseconds and zone survive the round trip


def test_a_tick_already_fired_stores_nothing(broker, make_task):
    first, again = make_task(), make_task()
    broker.fire_tick("nightly", T0, first)

    assert broker.fire_tick("nightly", T0, again) is None

    assert broker.get(again.id) is None
    assert broker.get(first.id).status == READY
    assert broker.stats()[0].ready == 1


def test_last_tick_is_the_newest_whatever_the_order_ticks_were_fired_in(broker, make_task):
    broker.fire_tick("hourly", at(3600), make_task())
    broker.fire_tick("hourly", at(0), make_task())  # a late catch-up of an older tick

    assert broker.last_tick("hourly") == at(3600)
    assert broker.fire_tick("hourly", at(7200), make_task()) is not None
    assert broker.last_tick("hourly") == at(7200)


def test_schedules_are_told_apart_by_name(broker, make_task):
    a, b = make_task(), make_task()

    assert broker.fire_tick("a", T0, a) == a.id
    assert broker.fire_tick("b", T0, b) == b.id

    assert broker.last_tick("a") == broker.last_tick("b") == T0
    assert broker.last_tick("c") is None


def test_backends_keep_their_own_ticks(broker, other_broker, make_task):
    mine, theirs = make_task(), make_task(backend="other")
    broker.fire_tick("nightly", T0, mine)

    assert other_broker.last_tick("nightly") is None
    assert other_broker.fire_tick("nightly", T0, theirs) == theirs.id
    assert other_broker.get(theirs.id).backend == "other"
    assert broker.fire_tick("nightly", at(60), make_task()) is not None
    assert other_broker.last_tick("nightly") == T0
    assert broker.last_tick("nightly") == at(60)


def test_a_tick_of_a_unique_task_still_active_points_at_that_task(broker, make_task):
    active = make_task(unique_key="k" * 64)
    broker.push([active])
    twin = make_task(unique_key="k" * 64)

    assert broker.fire_tick("unique", T0, twin) == active.id

    assert broker.get(twin.id) is None
    assert broker.last_tick("unique") == T0  # the tick is recorded: it is not fired again
    assert broker.fire_tick("unique", T0, make_task(unique_key="k" * 64)) is None


def test_a_tick_of_a_unique_task_that_finished_stores_a_new_one(broker, make_task):
    done = make_task(unique_key="u" * 64)
    broker.fire_tick("unique", T0, done)
    [claimed] = broker.claim(["default"], 1, "w1", at(60), T0)
    broker.settle([succeed(claimed.id, "w1", at(1))])
    fresh = make_task(unique_key="u" * 64)

    assert broker.fire_tick("unique", at(60), fresh) == fresh.id
    assert broker.get(fresh.id).status == READY


@pytest.mark.django_db(transaction=True)
def test_racing_fires_of_one_tick_store_exactly_one_task(broker, make_task):
    """Four threads (each with its own connection on a database store) fire the same tick at once.

    transaction=True: every thread's write commits and the others see it.
    """
    threads_count = 4
    tasks = [make_task() for _ in range(threads_count)]
    barrier = threading.Barrier(threads_count, timeout=60)
    results: list[str | None] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def fire(index: int) -> None:
        try:
            barrier.wait()
            outcome = broker.fire_tick("race", T0, tasks[index])
            with lock:
                results.append(outcome)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    winners = [r for r in results if r is not None]
    assert len(results) == threads_count
    assert len(winners) == 1
    assert [t.id for t in tasks if broker.get(t.id) is not None] == winners
    assert broker.last_tick("race") == T0


def test_prune_ticks_deletes_old_ticks_but_keeps_the_newest(broker: Any, make_task: Any) -> None:
    for seconds in (0, 10, 20, 30):
        broker.fire_tick("trim", at(seconds), make_task())
    broker.fire_tick("other", at(0), make_task())
    assert broker.prune_ticks("trim", at(20)) == 2  # 0 and 10; 20 is not before the bound
    assert broker.last_tick("trim") == at(30)
    assert broker.fire_tick("trim", at(20), make_task()) is None  # still recorded
    assert broker.prune_ticks("trim", at(1000)) == 1  # 20 goes, the newest (30) stays
    assert broker.last_tick("trim") == at(30)
    assert broker.fire_tick("trim", at(30), make_task()) is None
    assert broker.last_tick("other") == at(0)  # another schedule is untouched
    assert broker.prune_ticks("never-fired", at(1000)) == 0

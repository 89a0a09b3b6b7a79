"""The Scheduler on the in-memory store: due ticks, catch-up after a gap, exactly once, signals."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import DatabaseError
from django.tasks import task_backends
from django.tasks.signals import task_enqueued

from tandem.brokers.base import READY, NewTask
from tandem.brokers.memory import MemoryBroker
from tandem.conf import ScheduleConfig, parse_schedule
from tandem.scheduler.core import MAX_CATCH_UP, Fired, Scheduler
from tests.tasks import noop


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def config(name: str = "tick", cron: str = "0 * * * *", **values: Any) -> ScheduleConfig:
    values.setdefault("task", "tests.tasks.echo")
    return parse_schedule(
        {"cron": cron, **values},
        name=name,
        backend="default",
        key=lambda field: field,
        source=f"test schedule {name!r}",
    )


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker("default")


@pytest.fixture
def scheduler(broker: MemoryBroker):
    def make(*configs: ScheduleConfig, store: MemoryBroker | None = None) -> Scheduler:
        return Scheduler(task_backends["default"], configs or (config(),), store or broker)

    return make


@pytest.fixture
def enqueued() -> Iterator[list[Any]]:
    """The results ``task_enqueued`` was sent for."""
    results: list[Any] = []

    def receive(sender: object, task_result: Any, **kwargs: object) -> None:
        results.append(task_result)

    task_enqueued.connect(receive)
    try:
        yield results
    finally:
        task_enqueued.disconnect(receive)


def stored_tasks(broker: MemoryBroker) -> list[Any]:
    return sorted(broker._tasks.values(), key=lambda t: t.enqueued_at)


def test_a_new_schedule_starts_now_and_fires_at_its_next_tick(broker, scheduler):
    s = scheduler(config(cron="0 * * * *", args=["hourly"], kwargs={"n": 1}))

    assert s.due(utc(2030, 1, 1, 12, 30))  # the first step asks the store where it stopped
    assert s.run(utc(2030, 1, 1, 12, 30)) == []
    assert s.next_at == utc(2030, 1, 1, 13)
    assert not s.due(utc(2030, 1, 1, 12, 59, 59))
    assert s.due(utc(2030, 1, 1, 13))

    [fired] = s.run(utc(2030, 1, 1, 13, 0, 0, 250_000))

    stored = broker.get(fired.task_id)
    assert fired == Fired(name="tick", tick_at=utc(2030, 1, 1, 13), task_id=stored.id)
    assert (stored.task_path, stored.args, stored.kwargs, stored.queue_name, stored.status) == (
        "tests.tasks.echo",
        ["hourly"],
        {"n": 1},
        "default",
        READY,
    )
    assert broker.last_tick("tick") == utc(2030, 1, 1, 13)
    assert s.next_at == utc(2030, 1, 1, 14)


def test_history_is_never_caught_up_for_a_schedule_never_fired(broker, scheduler):
    s = scheduler(config(cron="* * * * *", catch_up="all"))

    assert s.run(utc(2030, 1, 1, 12, 30, 30)) == []

    assert stored_tasks(broker) == []
    assert s.next_at == utc(2030, 1, 1, 12, 31)


@pytest.mark.parametrize("restarted", [True, False], ids=["new-scheduler", "stalled-loop"])
@pytest.mark.parametrize(
    ("catch_up", "fired_hours"),
    [("one", [12]), ("none", []), ("all", [9, 10, 11, 12])],
)
def test_catch_up_after_a_gap(broker, scheduler, catch_up, fired_hours, restarted):
    """Fired at 08:00, then nothing ran until 12:30 (a new supervisor, or a loop stuck so long)."""
    first = scheduler(config(catch_up=catch_up))
    first.run(utc(2030, 1, 1, 7, 30))
    [at_eight] = first.run(utc(2030, 1, 1, 8, 0, 0, 100_000))
    later = scheduler(config(catch_up=catch_up)) if restarted else first

    fired = later.run(utc(2030, 1, 1, 12, 30))

    assert [f.tick_at for f in fired] == [utc(2030, 1, 1, hour) for hour in fired_hours]
    assert all(f.task_id for f in fired)
    assert len(stored_tasks(broker)) == 1 + len(fired_hours)
    assert broker.last_tick("tick") == utc(2030, 1, 1, fired_hours[-1] if fired_hours else 8)
    assert later.next_at == utc(2030, 1, 1, 13)
    [next_one] = later.run(utc(2030, 1, 1, 13, 0, 1))  # and on time again afterwards
    assert next_one.tick_at == utc(2030, 1, 1, 13)
    assert at_eight.tick_at == utc(2030, 1, 1, 8)


def test_catch_up_none_still_fires_a_tick_that_is_only_a_little_late(scheduler):
    late_store, missed_store = MemoryBroker(), MemoryBroker()
    for store in (late_store, missed_store):
        store.fire_tick("tick", utc(2030, 1, 1, 8), _new_task())

    on_time = scheduler(config(catch_up="none"), store=late_store).run(utc(2030, 1, 1, 9, 0, 59))
    missed = scheduler(config(catch_up="none"), store=missed_store).run(utc(2030, 1, 1, 9, 1, 1))

    assert [f.tick_at for f in on_time] == [utc(2030, 1, 1, 9)]  # 59 s late: not missed
    assert missed == []  # 61 s late: missed, skipped
    assert missed_store.last_tick("tick") == utc(2030, 1, 1, 8)


def test_catch_up_all_runs_only_the_newest_hundred(broker, scheduler, caplog):
    broker.fire_tick("tick", utc(2030, 1, 1, 8), _new_task())
    s = scheduler(config(cron="* * * * *", catch_up="all"))

    with caplog.at_level(logging.WARNING, logger="tandem.scheduler"):
        fired = s.run(utc(2030, 1, 1, 11, 0, 30))  # 180 ticks missed

    assert len(fired) == MAX_CATCH_UP == 100
    assert fired[0].tick_at == utc(2030, 1, 1, 9, 21)
    assert fired[-1].tick_at == utc(2030, 1, 1, 11, 0)
    assert len({f.task_id for f in fired}) == 100
    assert len(stored_tasks(broker)) == 101
    assert (
        "schedule 'tick' missed more than 100 ticks since 2030-01-01T08:00:00+00:00; running "
        "the newest 100 (catch_up='all')"
    ) in caplog.messages


def test_two_schedulers_fire_one_tick_once(broker, scheduler, enqueued):
    a, b = scheduler(), scheduler()
    for s in (a, b):
        s.run(utc(2030, 1, 1, 12, 30))

    [by_a] = a.run(utc(2030, 1, 1, 13, 0, 0, 1))
    [by_b] = b.run(utc(2030, 1, 1, 13, 0, 0, 2))

    assert by_a.task_id is not None
    assert by_b == Fired(name="tick", tick_at=utc(2030, 1, 1, 13), task_id=None)
    assert [t.id for t in stored_tasks(broker)] == [by_a.task_id]
    assert [r.id for r in enqueued] == [by_a.task_id]


def test_task_enqueued_carries_the_result_of_the_scheduled_task(scheduler, enqueued):
    s = scheduler(config(args=[1, 2], task="tests.tasks.add"))
    s.run(utc(2030, 1, 1, 12, 30))

    [fired] = s.run(utc(2030, 1, 1, 13, 0, 1))

    [result] = enqueued
    assert (result.id, result.task.module_path, result.args, result.status) == (
        fired.task_id,
        "tests.tasks.add",
        [1, 2],
        READY,
    )


def test_a_unique_task_still_active_is_not_enqueued_twice(broker, scheduler, enqueued):
    s = scheduler(config(task="tests.tasks.unique_ledger", args=["k"]))
    s.run(utc(2030, 1, 1, 12, 30))

    [first] = s.run(utc(2030, 1, 1, 13, 0, 1))
    [second] = s.run(utc(2030, 1, 1, 14, 0, 1))  # the 13:00 task has not run yet

    assert second.task_id == first.task_id
    assert [t.id for t in stored_tasks(broker)] == [first.task_id]
    assert [r.id for r in enqueued] == [first.task_id]  # no signal for the existing task
    assert broker.last_tick("tick") == utc(2030, 1, 1, 14)


def test_the_task_is_built_by_the_backend_with_its_own_options(broker, scheduler):
    s = scheduler(
        config("critical", task="tests.tasks.critical_noop"),
        config("flaky", task="tests.tasks.flaky", args=["k", 0]),
    )
    s.run(utc(2030, 1, 1, 12, 30))

    fired = {f.name: broker.get(f.task_id) for f in s.run(utc(2030, 1, 1, 13, 0, 1))}

    assert fired["critical"].queue_name == "critical"
    assert fired["flaky"].max_attempts == 3


def test_a_time_zone_schedule_fires_at_local_time_on_the_spring_change(broker, scheduler):
    s = scheduler(config(cron="30 2 * * *", timezone="Europe/Paris"))
    s.run(utc(2025, 3, 29, 12))
    assert s.next_at == utc(2025, 3, 30, 1)  # 03:00 CEST: 02:30 does not exist that night

    [fired] = s.run(utc(2025, 3, 30, 1, 0, 0, 5))

    assert fired.tick_at == utc(2025, 3, 30, 1)
    assert s.next_at == utc(2025, 3, 31, 0, 30)


def test_a_task_that_cannot_be_enqueued_is_logged_and_its_tick_skipped(broker, scheduler, caplog):
    s = scheduler(config("bad", task="tests.tasks.not_a_task"), config("good"))
    s.run(utc(2030, 1, 1, 12, 30))

    with caplog.at_level(logging.ERROR, logger="tandem.scheduler"):
        fired = {f.name: f for f in s.run(utc(2030, 1, 1, 13, 0, 1))}

    assert fired["bad"].task_id is None
    assert "not a Task" in fired["bad"].error
    assert fired["good"].task_id is not None
    assert broker.last_tick("bad") is None
    [record] = caplog.records
    assert record.getMessage().startswith(
        "schedule 'bad' could not enqueue tests.tasks.not_a_task for its tick at "
        "2030-01-01T13:00:00+00:00: 'tests.tasks.not_a_task' is a builtins.function, not a Task"
    )
    assert s.next_at == utc(2030, 1, 1, 14)  # the bad schedule does not block the loop


class FlakyBroker(MemoryBroker):
    """Its first ``fire_tick`` fails as an unavailable store would."""

    def __init__(self) -> None:
        super().__init__("default")
        self.failures = 1

    def fire_tick(self, name: str, tick_at: datetime, task: NewTask) -> str | None:
        if self.failures:
            self.failures -= 1
            raise DatabaseError("the store is unavailable (injected by the test)")
        return super().fire_tick(name, tick_at, task)


def test_a_store_error_propagates_and_the_same_tick_is_fired_next_time(scheduler):
    store = FlakyBroker()
    s = scheduler(store=store)
    s.run(utc(2030, 1, 1, 12, 30))

    with pytest.raises(DatabaseError):
        s.run(utc(2030, 1, 1, 13, 0, 1))
    assert s.due(utc(2030, 1, 1, 13, 0, 2))
    [fired] = s.run(utc(2030, 1, 1, 13, 0, 2))

    assert fired.tick_at == utc(2030, 1, 1, 13)
    assert len(stored_tasks(store)) == 1


def test_next_at_is_the_soonest_schedule(scheduler):
    s = scheduler(config("hourly", cron="0 * * * *"), config("ten", cron="*/10 * * * *"))
    s.run(utc(2030, 1, 1, 12, 31))

    assert s.next_at == utc(2030, 1, 1, 12, 40)
    assert [f.name for f in s.run(utc(2030, 1, 1, 12, 40))] == ["ten"]
    assert s.next_at == utc(2030, 1, 1, 12, 50)


def test_no_schedules_means_no_scheduler():
    assert Scheduler.for_backend(task_backends["default"]) is None
    empty = Scheduler(task_backends["default"], [], MemoryBroker())
    assert (empty.next_at, empty.due(utc(2030, 1, 1))) == (None, False)


def _new_task() -> NewTask:
    """A task to seed the store's tick table with (as an earlier supervisor would have)."""
    return task_backends["default"]._new_task(noop, [], {})

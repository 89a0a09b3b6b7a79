"""Schedules on Redis, end to end: supervisors on a RedisBackend fire each tick once (the tick is
recorded by the ``fire_tick`` script), and the task it stores runs to the end."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis

from tandem.brokers.base import SUCCESSFUL
from tandem.brokers.redis import RedisBroker, stamp
from tandem.scheduler import registry
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness
from tests.support.redis_store import PREFIX, keys

EVERY_MINUTE = {"every-minute": {"task": "tests.tasks.add", "cron": "* * * * *", "args": [2, 3]}}


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``@tandem.schedule`` registrations from other tests take part."""
    monkeypatch.setattr(registry, "_schedules", {})
    monkeypatch.setattr(registry, "_discovered", threading.Event())


def task_ids(redis_client: redis.Redis) -> list[str]:
    return [
        key.rsplit(":", 1)[1] for key in keys(redis_client) if key.startswith(f"{PREFIX}:task:")
    ]


def test_two_supervisors_on_redis_fire_a_tick_once_and_its_task_runs(
    redis_backend: Callable[..., None],
    make_broker: Callable[..., RedisBroker],
    redis_client: redis.Redis,
) -> None:
    redis_backend(schedule=EVERY_MINUTE, poll_interval=3600, executor="thread")
    clock = FrozenClock()
    harness = Harness()
    try:
        a = harness.supervisor(clock=clock, workers=1)
        b = harness.supervisor(clock=clock, workers=1)
        assert isinstance(a.broker, RedisBroker)
        a.step()
        b.step()
        assert task_ids(redis_client) == []  # a schedule never fired starts from now
        tick = a.scheduler.next_at
        assert tick == b.scheduler.next_at and tick > clock()

        clock.move_to(tick)
        a.step()
        b.step()

        [task_id] = task_ids(redis_client)
        broker = make_broker()
        assert broker.last_tick("every-minute") == tick
        ticks = f"{PREFIX}:default:ticks:every-minute"
        assert redis_client.zrange(ticks, 0, -1) == [stamp(tick)]
        assert (a.claimed, b.claimed) == (1, 0)  # woken by its own tick: claimed in that step

        harness.wait_for_outcomes(a, 1)
        a.step()  # settles the outcome
        stored = broker.get(task_id)
        assert stored is not None
        assert (stored.task_path, stored.status, stored.return_value) == (
            "tests.tasks.add",
            SUCCESSFUL,
            5,
        )
        assert a.scheduler.next_at == b.scheduler.next_at == tick + timedelta(minutes=1)

        # The next tick, stepped by b first this time: still one task for it.
        clock.move_to(tick + timedelta(minutes=1))
        b.step()
        a.step()
        assert len(task_ids(redis_client)) == 2
        assert broker.last_tick("every-minute") == tick + timedelta(minutes=1)
    finally:
        harness.cleanup()

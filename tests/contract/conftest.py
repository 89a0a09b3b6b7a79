"""The broker contract fixtures: every test here runs against each Broker implementation."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tandem.brokers.base import Broker, NewTask, Settlement
from tandem.brokers.database import DatabaseBroker
from tandem.brokers.memory import MemoryBroker
from tandem.brokers.redis import RedisBroker
from tests.redis import store as redis_store

ALIAS = "default"
# Microseconds on purpose: a store that truncates them breaks ordering and round-trips.
T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus ``seconds`` (a fixed clock: these tests never read the wall clock)."""
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.once),
        "database",
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def broker(request: pytest.FixtureRequest) -> Broker:
    if request.param == "memory":
        return MemoryBroker(ALIAS)
    if request.param == "redis":
        client = redis_store.client()  # fails (never skips) without Redis
        request.addfinalizer(lambda: redis_store.delete_keys(client))
        return RedisBroker(ALIAS, client, prefix=redis_store.PREFIX)
    return DatabaseBroker(ALIAS)


@pytest.fixture
def other_broker(broker: Broker) -> Broker:
    """A broker of another backend alias over the same store as ``broker``.

    Database brokers share the table, Redis brokers the key prefix; memory brokers are made to
    share their dictionaries, as two aliases on one store would.
    """
    if isinstance(broker, RedisBroker):
        return RedisBroker("other", broker.client, prefix=broker.prefix)
    if isinstance(broker, MemoryBroker):
        other = MemoryBroker("other")
        other._tasks = broker._tasks
        other._workers = broker._workers
        other._lock = broker._lock
        other._ticks = broker._ticks
        return other
    return DatabaseBroker("other")


@pytest.fixture
def make_task() -> Callable[..., NewTask]:
    """Build a NewTask; each call gets a fresh id and a later ``enqueued_at``."""
    counter = itertools.count()

    def build(**fields: Any) -> NewTask:
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "backend": ALIAS,
            "queue_name": "default",
            "task_path": "tests.tasks.add",
            "priority": 0,
            "takes_context": False,
            "args": [1, 2],
            "kwargs": {},
            "run_after": None,
            "enqueued_at": at(-1000 + next(counter)),
            "max_attempts": 1,
        }
        values.update(fields)
        return NewTask(**values)

    return build


@pytest.fixture
def push(broker: Broker, make_task: Callable[..., NewTask]) -> Callable[..., NewTask]:
    """Push one task built from ``fields`` and return it."""

    def push_one(**fields: Any) -> NewTask:
        task = make_task(**fields)
        broker.push([task])
        return task

    return push_one


def succeed(task_id: str, worker_id: str, when: datetime, value: Any = None) -> Settlement:
    return Settlement(
        id=task_id, worker_id=worker_id, status="SUCCESSFUL", finished_at=when, return_value=value
    )

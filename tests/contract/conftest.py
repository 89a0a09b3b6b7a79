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
from tests.support import redis_store

ALIAS = "default"
# Microseconds on purpose: a store that truncates them breaks ordering and round-trips.
T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus ``seconds`` (a fixed clock: these tests never read the wall clock)."""
    return T0 + timedelta(seconds=seconds)


#: The broker of the running test, for ``succeed()`` (which settles the current attempt).
_current: list[Broker] = []


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.once),
        "database",
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each broker on the caller's clock (the fixed ``T0`` clock); ``test_store_clock`` covers
    leases on the store's clock."""
    made: Broker
    if request.param == "memory":
        made = MemoryBroker(ALIAS)
    elif request.param == "redis":
        client = redis_store.client()  # fails (never skips) without Redis
        request.addfinalizer(lambda: redis_store.delete_keys(client))
        made = RedisBroker(ALIAS, client, prefix=redis_store.PREFIX, store_clock=False)
    else:
        made = DatabaseBroker(ALIAS, store_clock=False)
    _current[:] = [made]
    return made


@pytest.fixture
def other_broker(broker: Broker) -> Broker:
    """A broker of another backend alias over the same store as ``broker``.

    Database brokers share the table, Redis brokers the key prefix; memory brokers are made to
    share their dictionaries, as two aliases on one store would.
    """
    if isinstance(broker, RedisBroker):
        return RedisBroker("other", broker.client, prefix=broker.prefix, store_clock=False)
    if isinstance(broker, MemoryBroker):
        other = MemoryBroker("other")
        other._tasks = broker._tasks
        other._workers = broker._workers
        other._lock = broker._lock
        other._ticks = broker._ticks
        return other
    return DatabaseBroker("other", store_clock=False)


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


def token(task_id: str) -> str:
    """The token of the task's latest attempt (what its worker got from the claim)."""
    stored = _current[0].get(task_id)
    return stored.attempt_token if stored is not None else ""


def succeed(
    task_id: str, worker_id: str, when: datetime, value: Any = None, *, attempt: str | None = None
) -> Settlement:
    """A SUCCESSFUL ending of ``attempt`` (default: the task's current attempt)."""
    return Settlement(
        id=task_id,
        attempt_token=token(task_id) if attempt is None else attempt,
        worker_id=worker_id,
        status="SUCCESSFUL",
        finished_at=when,
        return_value=value,
    )

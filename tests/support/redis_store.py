"""The Redis server the tests use: loopback only, one key prefix per test run, cleaned per test.

Used by every tier that runs against Redis (contract, conformance, tests/redis). A missing Redis
fails those tests with a message that says how to start it; it never skips them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from django.conf import settings

from tandem.brokers.base import NewTask
from tandem.brokers.redis_client import connect
from tandem.conf import RedisOptions

URL: str = settings.TANDEM_TEST_REDIS["url"]
PREFIX: str = settings.TANDEM_TEST_REDIS["prefix"]
REDIS_BACKEND = "tandem.backends.redis.RedisBackend"
#: The store's clock in the Redis broker tests, and a lease from it.
T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
LEASE = T0 + timedelta(seconds=60)
START = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"


def backend_options() -> dict[str, Any]:
    """The Redis keys of ``OPTIONS`` for a RedisBackend under test."""
    return {"url": URL, "prefix": PREFIX}


def client() -> redis.Redis:
    """The test client (decoded responses), after checking that Redis answers."""
    test_client = connect(RedisOptions(url=URL, prefix=PREFIX))
    try:
        test_client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(
            f"Redis does not answer at {URL} ({exc}). The Redis tests need it and fail without "
            f"it; start one with: {START}",
            pytrace=False,
        )
    return test_client


def keys(test_client: redis.Redis, prefix: str = PREFIX) -> list[str]:
    """Every key under ``prefix``, sorted."""
    return sorted(test_client.scan_iter(match=f"{prefix}:*", count=1000))


def delete_keys(test_client: redis.Redis, prefix: str = PREFIX) -> None:
    """Delete every key under ``prefix`` (what a test leaves behind)."""
    doomed = keys(test_client, prefix)
    for start in range(0, len(doomed), 500):
        test_client.delete(*doomed[start : start + 500])


@pytest.fixture
def redis_client() -> Any:
    """The test client; every key of this run's prefix is deleted after the test."""
    test_client = client()
    yield test_client
    delete_keys(test_client)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_task(**fields: Any) -> NewTask:
    """A task to push, enqueued 10 s before ``T0``; ``fields`` override the defaults."""
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "backend": "default",
        "queue_name": "default",
        "task_path": "tests.tasks.add",
        "priority": 0,
        "takes_context": False,
        "args": [1, 2],
        "kwargs": {},
        "run_after": None,
        "enqueued_at": at(-10),
    }
    values.update(fields)
    return NewTask(**values)


def k(*parts: str) -> str:
    """A key under the test prefix."""
    return ":".join((PREFIX, *parts))

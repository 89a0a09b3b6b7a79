"""A password-protected Redis: ``OPTIONS["password"]`` (or one in the URL) authenticates.

The test server has no password, so each test adds an ACL user of its own (Redis >= 6) limited to
this run's keys and wake channels, and removes it afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tandem.backends.redis import RedisBackend
from tandem.brokers.base import NewTask
from tests.support.redis_store import PREFIX, URL


@pytest.fixture
def acl_user(redis_client: redis.Redis) -> Iterator[tuple[str, str]]:
    name, password = f"tandem-test-{os.getpid()}", secrets.token_hex(16)
    redis_client.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[f"{PREFIX}:*"],
        channels=[f"{PREFIX}:*"],
        commands=["+@all"],
    )
    try:
        yield name, password
    finally:
        redis_client.acl_deluser(name)


def backend(**options: Any) -> RedisBackend:
    return RedisBackend(
        "default", {"QUEUES": ["default"], "OPTIONS": {"prefix": PREFIX, **options}}
    )


def user_url(user: str, password: str = "") -> str:
    host = URL.split("://", 1)[1]
    return f"redis://{user}{':' + password if password else ''}@{host}"


def round_trip(store: RedisBackend) -> None:
    from django.utils import timezone

    task = NewTask(
        id="6f1c3f36-2a55-4b0e-9a4e-2c9d2f7f6a10",
        backend="default",
        queue_name="default",
        task_path="tests.tasks.add",
        priority=0,
        takes_context=False,
        args=[1, 2],
        kwargs={},
        run_after=None,
        enqueued_at=timezone.now(),
    )
    assert store.broker.push([task]) == [task.id]
    stored = store.broker.get(task.id)
    assert stored is not None and stored.args == [1, 2]


def test_the_password_option_authenticates(acl_user: tuple[str, str]) -> None:
    user, password = acl_user
    round_trip(backend(url=user_url(user), password=password))


def test_a_password_in_the_url_authenticates(acl_user: tuple[str, str]) -> None:
    user, password = acl_user
    round_trip(backend(url=user_url(user, password)))


def test_a_wrong_password_is_a_connection_error(acl_user: tuple[str, str]) -> None:
    user, _ = acl_user
    store = backend(url=user_url(user), password="not-the-password")

    with pytest.raises(ConnectionError, match=r"^Redis: .*(invalid|WRONGPASS)") as caught:
        store.broker.get("6f1c3f36-2a55-4b0e-9a4e-2c9d2f7f6a10")
    assert isinstance(caught.value.__cause__, redis.AuthenticationError)

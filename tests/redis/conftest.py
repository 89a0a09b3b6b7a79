"""The Redis tier: what the broker contract cannot see — key layout, expiry, scripts, auth,
wake-ups. Needs Redis on 127.0.0.1:6379 (fails without it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from tandem.brokers.redis import RedisBroker
from tests.support.redis_store import PREFIX, REDIS_BACKEND, backend_options
from tests.support.redis_store import redis_client as redis_client  # the fixture, re-exported

ALIAS = "default"


@pytest.fixture
def make_broker(redis_client: redis.Redis) -> Callable[..., RedisBroker]:
    """A RedisBroker over the test client: ``make_broker(result_ttl=…, alias=…)``."""

    def build(alias: str = ALIAS, **kwargs: Any) -> RedisBroker:
        kwargs.setdefault("prefix", PREFIX)
        kwargs.setdefault("store_clock", False)  # these tests drive a fixed clock
        return RedisBroker(alias, redis_client, **kwargs)

    return build


@pytest.fixture
def redis_backend(settings: Any, redis_client: redis.Redis) -> Callable[..., None]:
    """Make TASKS['default'] a RedisBackend under test: ``redis_backend(poll_interval=…)``."""

    def apply(**options: Any) -> None:
        base = dict(settings.TASKS["default"].get("OPTIONS", {}))
        settings.TASKS = {
            "default": {
                "BACKEND": REDIS_BACKEND,
                "QUEUES": ["default", "critical", "exports"],
                "OPTIONS": {**base, **backend_options(), **options},
            }
        }

    return apply

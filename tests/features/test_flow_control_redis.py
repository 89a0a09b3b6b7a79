"""Flow control end to end on ``RedisBackend``: paused queues (the pause lives in Redis, claims
skip it) and ``tandem retry|cancel``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.tasks import task_backends

import tandem
from tandem.brokers.base import READY, SUCCESSFUL
from tests.support import redis_store
from tests.tasks import critical_noop, hooked_flaky, noop

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def redis_backend(settings: Any, threads: None) -> Iterator[None]:
    client = redis_store.client()  # fails (never skips) without Redis
    base = dict(settings.TASKS["default"].get("OPTIONS", {}))
    settings.TASKS = {
        "default": {
            "BACKEND": redis_store.REDIS_BACKEND,
            "QUEUES": ["default", "critical", "exports"],
            "OPTIONS": {**base, **redis_store.backend_options()},
        }
    }
    yield
    redis_store.delete_keys(client)


def status(result_id: str) -> str:
    return str(task_backends["default"].get_result(result_id).status)


def test_a_paused_queue_waits_on_redis_until_resumed(drain) -> None:
    assert tandem.pause("critical") is True
    assert tandem.is_paused("critical")
    waiting = critical_noop.using(priority=10).enqueue()
    other = noop.enqueue()

    drain()

    assert status(other.id) == SUCCESSFUL
    assert status(waiting.id) == READY
    assert task_backends["default"].get_result(waiting.id).attempts == 0
    assert tandem.resume("critical") is True
    assert not tandem.is_paused("critical")
    drain()
    assert status(waiting.id) == SUCCESSFUL


def test_a_bad_queue_is_refused_on_redis_too() -> None:
    with pytest.raises(ValueError, match="Queue 'exprots' is not one of"):
        tandem.pause("exprots")
    assert tandem.is_paused("exprots") is False


def test_retry_and_cancel_commands_on_redis(drain) -> None:
    result = hooked_flaky.enqueue("redis-bulk-retry", 3)  # max_attempts=2: fails both
    drain()
    spent = task_backends["default"].get_result(result.id)
    assert (spent.status, spent.attempts) == ("FAILED", 2)
    out = io.StringIO()

    call_command("tandem", "retry", "--task", "tests.tasks.hooked_flaky", stdout=out)

    assert out.getvalue().startswith("Retried 1 failed task(s)")
    drain()
    done = task_backends["default"].get_result(result.id)
    assert (done.status, done.attempts, len(done.errors)) == ("SUCCESSFUL", 4, 3)
    waiting = noop.enqueue()
    call_command("tandem", "cancel", "--queue", "default", stdout=io.StringIO())
    assert status(waiting.id) == "FAILED"

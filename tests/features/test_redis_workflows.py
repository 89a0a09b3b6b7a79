"""Workflows end to end on ``RedisBackend`` (the broker calls are in tests/contract)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tandem
from tandem.brokers.base import FAILED, SUCCESSFUL
from tests import tasks
from tests.features import tasks as features
from tests.models import Ledger
from tests.support import redis_store

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


def test_chain_group_and_enqueue_after_on_redis(drain: Any) -> None:
    steps = tandem.chain([(tasks.add, [1, 2], None), (features.add_to, [10], None)])
    group = tandem.group(
        [(tasks.add, [n, 1], None) for n in range(3)] + [(tasks.fail, ["x"], None)],
        then=features.group_done,
    )
    failed_after = tandem.enqueue_after([group.results[3]], tasks.ledger, ["redis-never"])
    seen = tandem.enqueue_after(steps, features.parents_seen, ["redis"])
    drain()
    for result in (*steps, failed_after, seen):
        result.refresh()
    assert [r.return_value for r in steps] == [3, 13]
    assert failed_after.status == FAILED
    assert failed_after.errors[-1].exception_class_path == "tandem.exceptions.DependencyFailed"
    assert seen.status == SUCCESSFUL
    assert seen.return_value["parents"] == [["SUCCESSFUL", 3], ["SUCCESSFUL", 13]]
    fresh = tandem.get_group(group.id)
    assert fresh.finished and not fresh.successful and fresh.done == 4
    assert list(Ledger.objects.filter(key=f"then:{group.id}").values_list("worker", flat=True)) == [
        "4/4"
    ]
    assert not Ledger.objects.filter(key="redis-never").exists()

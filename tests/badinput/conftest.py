"""The bad-input corpus runs against each store: the run's database, and Redis (once, in the
SQLite run). ``backend`` points ``TASKS["default"]`` at the store under test."""

from __future__ import annotations

from typing import Any

import pytest
from django.tasks import task_backends

from tandem.backends.base import TandemBackend
from tests.support import redis_store

DATABASE_BACKEND = "tandem.backends.database.DatabaseBackend"
QUEUES = ["default", "critical", "exports"]


@pytest.fixture(
    params=["database", pytest.param("redis", marks=pytest.mark.redis)],
)
def backend(request: pytest.FixtureRequest, settings: Any) -> TandemBackend:
    """The backend under test, installed as ``TASKS["default"]``. Tests that use the database
    store mark themselves ``django_db``."""
    options = dict(settings.TASKS["default"].get("OPTIONS", {}))
    path = DATABASE_BACKEND
    if request.param == "redis":
        client = redis_store.client()  # fails (never skips) without Redis
        request.addfinalizer(lambda: redis_store.delete_keys(client))
        options.update(redis_store.backend_options())
        path = redis_store.REDIS_BACKEND
    settings.TASKS = {"default": {"BACKEND": path, "QUEUES": list(QUEUES), "OPTIONS": options}}
    instance = task_backends["default"]
    assert isinstance(instance, TandemBackend)
    return instance


@pytest.fixture
def options(settings: Any, backend: TandemBackend) -> Any:
    """Change ``TASKS["default"]["OPTIONS"]`` of the backend under test: ``options(key=value)``;
    returns the rebuilt backend."""

    def apply(**values: Any) -> TandemBackend:
        current = settings.TASKS["default"]
        settings.TASKS = {
            "default": {**current, "OPTIONS": {**current.get("OPTIONS", {}), **values}}
        }
        instance = task_backends["default"]
        assert isinstance(instance, TandemBackend)
        return instance

    return apply

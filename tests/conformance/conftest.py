"""Every test in this folder runs once per backend in ``BACKENDS``.

The autouse ``backend_path`` fixture points ``TASKS["default"]`` at the backend under test
(Django rebuilds its backends when ``TASKS`` changes); ``backend`` returns that instance.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.tasks import task_backends

from tandem.backends.base import TandemBackend
from tests.support import redis_store

BACKENDS = [
    "tandem.backends.database.DatabaseBackend",
    # Redis does not depend on the run's SQL database: once, in the SQLite run.
    pytest.param(redis_store.REDIS_BACKEND, marks=pytest.mark.redis),
]
QUEUES = ["default", "critical", "exports"]


@pytest.fixture(params=BACKENDS, ids=lambda path: path.rsplit(".", 1)[-1], autouse=True)
def backend_path(request: pytest.FixtureRequest, settings: Any) -> str:
    """The dotted path of the backend under test, installed as ``TASKS["default"]``."""
    path: str = request.param
    options = dict(settings.TASKS["default"].get("OPTIONS", {}))
    if path == redis_store.REDIS_BACKEND:
        client = redis_store.client()  # fails (never skips) without Redis
        request.addfinalizer(lambda: redis_store.delete_keys(client))
        options.update(redis_store.backend_options())
    settings.TASKS = {"default": {"BACKEND": path, "QUEUES": list(QUEUES), "OPTIONS": options}}
    return path


@pytest.fixture
def backend(backend_path: str) -> TandemBackend:
    """The backend instance under test (``TASKS["default"]``)."""
    instance = task_backends["default"]
    assert f"{type(instance).__module__}.{type(instance).__qualname__}" == backend_path
    assert isinstance(instance, TandemBackend)
    return instance

"""Settings of the worker processes of tests/scale: the suite's settings, with the task store
chosen by ``TANDEM_SCALE_STORE``: ``database`` (default: the run's database, ``TANDEM_TEST_DB``)
or ``redis`` (``tandem.backends.redis.RedisBackend`` at ``TANDEM_REDIS_URL``, keys under
``TANDEM_REDIS_PREFIX``).
"""

import os
from typing import Any

from tests.settings import *  # noqa: F403
from tests.settings import TANDEM_TEST_REDIS, TASKS

REDIS_BACKEND = "tandem.backends.redis.RedisBackend"


def redis_tasks(tasks: dict[str, Any], url: str, prefix: str) -> dict[str, Any]:
    """``tasks`` with its default backend stored in Redis instead (same queues and options)."""
    default = tasks["default"]
    return {
        "default": {
            "BACKEND": REDIS_BACKEND,
            "QUEUES": list(default["QUEUES"]),
            "OPTIONS": {**default.get("OPTIONS", {}), "url": url, "prefix": prefix},
        }
    }


if os.environ.get("TANDEM_SCALE_STORE", "database") == "redis":
    TASKS = redis_tasks(TASKS, TANDEM_TEST_REDIS["url"], TANDEM_TEST_REDIS["prefix"])

# The workers log to stderr as ``tandem worker`` does by default, without a line per finished task
# (10,000 of them would bury what the tests look for: back-off, recovery).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "tandem": {"handlers": ["stderr"], "level": "INFO"},
        "tandem.tasks": {"level": "WARNING"},
    },
}

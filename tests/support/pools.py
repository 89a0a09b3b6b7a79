"""Pool settings for tests: ``pool("process", workers=1)`` is ``OPTIONS["pools"]`` with one pool
serving every test queue."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from django.conf import settings

# mysqlclient cannot load in a subinterpreter: on MariaDB the subinterpreter pool is refused
# (tests/unit/test_conf.py checks the message).
EXECUTORS = ["thread", "process"] + (
    ["subinterpreter"] if sys.version_info >= (3, 14) and settings.DB_KIND != "mariadb" else []
)

needs_subinterpreters = pytest.mark.skipif(
    sys.version_info < (3, 14) or settings.DB_KIND == "mariadb",
    reason="subinterpreter pools need Python >= 3.14 (and a driver that loads in them)",
)


def pool(executor: str, workers: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "default": {
            "queues": ["default", "critical", "exports"],
            "workers": workers,
            "executor": executor,
            **extra,
        }
    }

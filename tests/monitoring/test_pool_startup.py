"""A pool that does not run on its configured executor, or whose workers cannot start, is shown as
such by ``tandem status``, the dashboard and the metrics; one that cannot start is unhealthy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.tasks import task_backends
from django.utils import timezone

from tandem.brokers.base import WorkerInfo
from tandem.monitoring import metrics
from tests.monitoring.test_status import status

pytestmark = pytest.mark.django_db

ALL = ["default", "critical", "exports"]
REFUSED = "module _curses does not support loading in subinterpreters"


def register(**pool: Any) -> None:
    beat = timezone.now() - timedelta(seconds=1)
    task_backends["default"].broker.register_worker(  # type: ignore[attr-defined]
        WorkerInfo(
            id="host:1:a",
            backend="default",
            hostname="host",
            pid=1,
            queues=tuple(ALL),
            pools={
                "p": {
                    "queues": ALL,
                    "workers": 4,
                    "executor": "process",
                    "configured_executor": "subinterpreter",
                    "startup_error": f"a subinterpreter worker failed setting Django up: "
                    f"ImportError: {REFUSED}",
                    "restarts": 0,
                    "in_flight": 0,
                    "failing": None,
                    **pool,
                }
            },
            started_at=beat,
            last_heartbeat_at=beat,
        )
    )


def test_status_shows_the_executor_in_use_and_why_it_is_not_the_configured_one() -> None:
    register()
    code, out, _ = status()
    assert code == 0, out  # the fallback runs the tasks: healthy
    assert "pool p: process x4" in out
    assert "runs on process instead of subinterpreter: a subinterpreter worker failed " in out
    assert REFUSED in out


def test_a_pool_whose_workers_cannot_start_is_unhealthy() -> None:
    register(failing="a process worker failed setting Django up: RuntimeError: no settings")
    code, out, err = status()
    assert code == 1
    assert "FAILING: its workers cannot start: a process worker failed" in out
    assert "pool 'p': its process workers cannot start (a process worker failed" in err


def test_the_dashboard_shows_the_fallback_and_the_failure(admin_client: Any) -> None:
    register(failing="RuntimeError: no settings", fallback="process", fallback_tasks=3)
    page = admin_client.get("/tasks/panel/?backend=default").content.decode()
    assert "runs on process instead of subinterpreter" in page
    assert "3 task(s) ran on its process fallback" in page
    assert "FAILING: its workers cannot start: RuntimeError: no settings" in page


def test_the_metrics_show_the_executor_in_use_and_failing_pools() -> None:
    register(failing="RuntimeError: no settings")
    text = metrics.exposition().decode()
    assert (
        'tandem_pool_executor_workers{backend="default",configured_executor="subinterpreter",'
        'executor="process",pool="p"} 4.0'
    ) in text
    assert 'tandem_pool_failing{backend="default",pool="p"} 1.0' in text

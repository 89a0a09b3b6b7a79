"""Queue isolation: a pool busy with long tasks never delays another pool's queue."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from tandem.models import TaskRecord
from tandem.worker.supervisor import Supervisor
from tests import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


def _count(results: list[Any], status: str) -> int:
    return TaskRecord.objects.filter(id__in=[r.id for r in results], status=status).count()


def test_critical_tasks_all_finish_while_exports_fill_their_pool(use_pools: Any) -> None:
    """Two long exports hold both slots of their pool; fifty critical tasks enqueued meanwhile
    all finish before either export does. The exports wait on a gate that opens only once the
    critical tasks are done, so with a shared pool (no isolation) this could never pass."""
    use_pools(
        pools={
            "exports": {"queues": ["exports"], "workers": 2, "executor": "thread"},
            "critical": {"queues": ["critical"], "workers": 2, "executor": "thread"},
            "default": {"queues": ["default"], "workers": 1, "executor": "thread"},
        }
    )
    gate = tasks.gate("exports-isolation")
    gate.clear()
    exports = [
        tasks.gated.using(queue_name="exports").enqueue("exports-isolation", 60) for _ in range(2)
    ]
    supervisor = Supervisor(listen=False)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        _wait_until(lambda: _count(exports, TaskResultStatus.RUNNING) == 2)  # exports pool full
        critical = [tasks.critical_noop.enqueue() for _ in range(50)]
        _wait_until(lambda: _count(critical, TaskResultStatus.SUCCESSFUL) == 50)
        assert _count(exports, TaskResultStatus.RUNNING) == 2  # still holding their pool
    finally:
        gate.set()
        supervisor.request_stop()
        thread.join(60)
    assert not thread.is_alive()

    rows = {str(r.id): r for r in TaskRecord.objects.all()}
    assert all(rows[r.id].status == TaskResultStatus.SUCCESSFUL for r in exports)
    assert max(rows[r.id].finished_at for r in critical) < min(
        rows[r.id].finished_at for r in exports
    )

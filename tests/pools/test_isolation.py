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


def _wait_until(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


def test_critical_tasks_all_finish_while_exports_fill_their_pool(use_pools: Any) -> None:
    use_pools(
        pools={
            "exports": {"queues": ["exports"], "workers": 2, "executor": "thread"},
            "critical": {"queues": ["critical"], "workers": 2, "executor": "thread"},
            "default": {"queues": ["default"], "workers": 1, "executor": "thread"},
        }
    )
    exports = [tasks.sleep.using(queue_name="exports").enqueue(1.5) for _ in range(2)]
    supervisor = Supervisor(burst=True, listen=False)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        # Both exports are running: the exports pool is full.
        _wait_until(
            lambda: (
                TaskRecord.objects.filter(
                    id__in=[r.id for r in exports], status=TaskResultStatus.RUNNING
                ).count()
                == 2
            )
        )
        critical = [tasks.critical_noop.enqueue() for _ in range(50)]
    finally:
        thread.join(60)
    assert not thread.is_alive()

    rows = {str(r.id): r for r in TaskRecord.objects.all()}
    critical_done = [rows[r.id].finished_at for r in critical]
    exports_done = [rows[r.id].finished_at for r in exports]
    assert all(rows[r.id].status == TaskResultStatus.SUCCESSFUL for r in critical + exports)
    # Every critical task finished before either export did.
    assert max(critical_done) < min(exports_done)

"""Several worker processes on one database: every task runs exactly once, nothing is lost,
and SQLite never reports "database is locked".
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from django.db import transaction

from tandem.brokers.base import SUCCESSFUL
from tandem.models import TaskRecord
from tests.models import Ledger
from tests.support.processes import Child, Children, wait_until
from tests.tasks import ledger

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

WORKERS = 4


def enqueue(prefix: str, count: int, batch: int = 200) -> None:
    for start in range(0, count, batch):
        with transaction.atomic():
            for n in range(start, min(count, start + batch)):
                ledger.enqueue(f"{prefix}-{n}")


def assert_ran_exactly_once(total: int) -> None:
    statuses = Counter(TaskRecord.objects.values_list("status", flat=True))
    assert statuses == {SUCCESSFUL: total}
    assert set(TaskRecord.objects.values_list("worker_id", flat=True)) == {""}
    assert {len(ids) for ids in TaskRecord.objects.values_list("worker_ids", flat=True)} == {1}
    runs = Counter(Ledger.objects.values_list("key", flat=True))
    assert len(runs) == total
    assert set(runs.values()) == {1}, [key for key, n in runs.items() if n > 1][:10]


def assert_clean_exit(child: Child) -> None:
    assert child.wait(120) == 0, child.output()
    assert "database is locked" not in child.stderr, child.output()
    assert "task store unavailable" not in child.stderr, child.output()


def test_burst_workers_and_a_concurrent_writer_run_every_task_exactly_once(
    children: Children,
) -> None:
    enqueue("early", 1200)
    workers = [children.worker("--burst", name=f"worker-{n}") for n in range(WORKERS)]
    writer = children.python("-m", "tests.process.writer", "late", "800", "20", name="writer")

    assert_clean_exit(writer)
    for worker in workers:
        assert_clean_exit(worker)
    if TaskRecord.objects.exclude(status=SUCCESSFUL).exists():
        # The burst workers found the queue empty before the writer's last batch: finish it.
        assert_clean_exit(children.worker("--burst", name="last"))

    assert_ran_exactly_once(2000)


@pytest.mark.postgres
def test_postgres_workers_waiting_for_work_run_every_task_exactly_once(children: Children) -> None:
    workers = [children.worker(name=f"worker-{n}") for n in range(WORKERS)]
    wait_until(
        lambda: all("  lease:" in w.stdout for w in workers), "the workers to start", alive=workers
    )

    enqueue("notified", 2000, batch=100)

    wait_until(
        lambda: TaskRecord.objects.filter(status=SUCCESSFUL).count() == 2000,
        "every task to succeed",
        timeout=60,
        alive=workers,
    )
    for worker in workers:
        worker.send(signal.SIGTERM)
    for worker in workers:
        assert_clean_exit(worker)
    assert_ran_exactly_once(2000)
    per_worker = Counter(Ledger.objects.values_list("worker", flat=True))
    assert len(per_worker) > 1  # the work was shared

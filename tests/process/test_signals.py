"""Signals and crashes with real worker processes: SIGTERM drains, a second one releases,
``kill -9`` loses nothing once the lease expires.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from django.tasks import TaskResult
from django.utils import timezone

from tandem.brokers.base import READY, RUNNING, SUCCESSFUL
from tandem.models import TaskRecord
from tests.models import Ledger
from tests.support.processes import Children, wait_until
from tests.tasks import pid_file_then_sleep, sleep_then_ledger

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def record(result: TaskResult) -> TaskRecord:
    return TaskRecord.objects.get(id=result.id)


def running(result: TaskResult) -> bool:
    return record(result).status == RUNNING


def test_sigterm_lets_the_running_task_finish_then_exits_zero(children: Children) -> None:
    result = sleep_then_ledger.enqueue("sigterm", 2)
    worker = children.worker("-w", "1")
    wait_until(lambda: running(result), "the worker to claim the task", alive=[worker])

    worker.send(signal.SIGTERM)

    assert worker.wait() == 0, worker.output()
    row = record(result)
    assert (row.status, row.attempts, row.errors) == (SUCCESSFUL, 1, [])
    assert Ledger.objects.filter(key="sigterm").count() == 1
    assert "SIGTERM: draining — finishing 1 in-flight task(s)" in worker.stderr
    assert worker.stdout.rstrip().endswith("stopped: 1 task(s) settled.")


def test_second_signal_releases_the_running_task_to_ready(children: Children) -> None:
    result = sleep_then_ledger.enqueue("released", 2)
    worker = children.worker("-w", "1")
    wait_until(lambda: running(result), "the worker to claim the task", alive=[worker])

    worker.send(signal.SIGTERM)
    wait_until(lambda: "draining" in worker.stderr, "the worker to drain", alive=[worker])
    worker.send(signal.SIGINT)

    assert worker.wait() == 0, worker.output()
    row = record(result)
    assert (row.status, row.worker_id, row.lease_expires_at, row.attempts) == (READY, "", None, 1)
    assert [e["exception_class_path"] for e in row.errors] == ["tandem.exceptions.Released"]
    assert "SIGINT: releasing in-flight tasks and exiting." in worker.stderr
    assert Ledger.objects.filter(key="released").count() == 0


def test_task_of_a_killed_worker_runs_again_elsewhere_after_its_lease_expires(
    children: Children,
) -> None:
    result = sleep_then_ledger.enqueue("killed", 2)
    doomed = children.worker("-w", "1", name="doomed", TANDEM_TEST_LEASE="2")
    wait_until(lambda: running(result), "the first worker to claim the task", alive=[doomed])
    lost_worker = record(result).worker_id

    doomed.send(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL
    assert record(result).status == RUNNING  # nobody has noticed yet

    rescuer = children.worker("-w", "1", name="rescuer", TANDEM_TEST_LEASE="2")
    wait_until(
        lambda: record(result).status == SUCCESSFUL,
        "the second worker to finish it",
        alive=[rescuer],
    )
    rescuer.send(signal.SIGTERM)
    assert rescuer.wait() == 0, rescuer.output()

    row = record(result)
    assert row.attempts == 2
    assert row.worker_ids[0] == lost_worker and row.worker_ids[1] != lost_worker
    assert [e["exception_class_path"] for e in row.errors] == ["tandem.exceptions.WorkerLost"]
    assert lost_worker in row.errors[0]["traceback"]
    assert row.finished_at is not None and row.finished_at <= timezone.now()
    assert Ledger.objects.filter(key="killed").count() == 1  # the killed attempt never got there
    assert f"recovered task {result.id} from lost worker {lost_worker}" in rescuer.stderr


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_process_pool_child_ends_soon_after_its_worker_is_killed(
    children: Children, tmp_path: Path
) -> None:
    """A worker killed with SIGKILL leaves no child running its task: the task's lease would
    expire and another worker run it again while the orphan still ran its copy."""
    marker = tmp_path / "pid"
    pid_file_then_sleep.enqueue(str(marker), 300)
    doomed = children.worker("-w", "1", name="doomed", TANDEM_TEST_EXECUTOR="process")
    wait_until(marker.exists, "the task to start in a pool child", alive=[doomed])
    wait_until(lambda: marker.read_text().isdigit(), "its pid", alive=[doomed])
    child = int(marker.read_text())
    assert child != doomed.pid

    doomed.send(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL

    wait_until(lambda: not alive(child), "the orphaned child to end")

"""Pools that must not wedge a worker: a process-pool child stuck in start-up, a subinterpreter
stuck in a C call.

- A child that never finishes starting is killed at the start-up deadline, and its task fails
  (``WorkerCrashed``, retried like any crash); a cancel during start-up ends it at once.
- Retired interpreters still running are capped: past the cap the worker releases its tasks and
  exits 75, for its process supervisor to restart it.
- A drain that leaves a retired interpreter stuck in a task exits 0, without crashing in
  interpreter finalization.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from django.tasks import TaskResultStatus

import tandem
from tandem.models import TaskRecord
from tandem.worker.pools import processes
from tests.support.doubles import wait_for
from tests.support.harness import Harness
from tests.support.pool_tasks import stuck
from tests.support.pools import needs_subinterpreters, pool
from tests.support.processes import Children, wait_until
from tests.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hanging_start_up(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Process-pool children set Django up with settings whose import never ends."""
    real = processes.worker_environment

    def hanging() -> tuple[list[str], dict[str, str], dict[str, Any]]:
        path, environ, databases = real()
        return (
            path,
            {**environ, "DJANGO_SETTINGS_MODULE": "tests.faults.hanging_settings"},
            databases,
        )

    monkeypatch.setattr(processes, "worker_environment", hanging)
    tasks = {k: dict(v) for k, v in settings.TASKS.items()}
    # A short lease: the heartbeat (every lease / 3) is when a cancel reaches the starting child.
    tasks["default"]["OPTIONS"] = {"lease_seconds": 6, "pools": pool("process", workers=1)}
    settings.TASKS = tasks


@pytest.mark.usefixtures("hanging_start_up")
def test_a_child_stuck_in_start_up_is_killed_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, drain: Any
) -> None:
    monkeypatch.setattr(processes, "STARTUP_TIMEOUT", 1.0)
    result = add.enqueue(1, 2)

    supervisor = drain()

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "tandem.exceptions.WorkerCrashed"
    assert "did not start within 1s" in error.traceback
    assert supervisor.pools[0].pool.restarts == 1


@pytest.mark.usefixtures("hanging_start_up")
def test_a_cancel_during_start_up_ends_it_at_once(harness: Harness) -> None:
    result = add.enqueue(1, 2)
    supervisor = harness.supervisor(workers=1)
    harness.run_in_background(supervisor)
    wait_for(lambda: TaskRecord.objects.get(id=result.id).status == "RUNNING", "the claim")

    # Asked to stop (it is RUNNING); the next heartbeat finds it and kills its starting child.
    assert tandem.cancel(result.id) is tandem.CancelOutcome.REQUESTED
    wait_for(lambda: TaskRecord.objects.get(id=result.id).status == "FAILED", "the cancel", 30)
    row = TaskRecord.objects.get(id=result.id)
    assert row.errors[-1]["exception_class_path"] == "tandem.exceptions.Cancelled"


@needs_subinterpreters
@pytest.mark.process
def test_too_many_stuck_interpreters_make_the_worker_exit_for_a_restart(
    children: Children,
) -> None:
    results = [stuck.enqueue(120) for _ in range(4)]
    worker = children.worker(
        "-w", "1", TANDEM_TEST_EXECUTOR="subinterpreter", name="stuck-interpreters"
    )

    assert worker.wait(120) == 75, worker.output()
    assert "retired interpreters are still running their tasks (at most 2)" in worker.stderr
    assert "exiting for a restart" in worker.stderr
    rows = TaskRecord.objects.filter(id__in=[r.id for r in results])
    assert not rows.filter(status="RUNNING").exists()  # released or failed, none held


@needs_subinterpreters
@pytest.mark.process
def test_a_drain_with_a_stuck_interpreter_exits_zero(children: Children) -> None:
    result = stuck.enqueue(120)
    worker = children.worker("-w", "1", TANDEM_TEST_EXECUTOR="subinterpreter", name="drain-stuck")
    wait_until(
        lambda: "retired an interpreter stuck in task" in worker.stderr,
        "the interpreter to be retired",
        timeout=60,
        alive=[worker],
    )
    wait_until(
        lambda: TaskRecord.objects.get(id=result.id).status != "RUNNING",
        "the timeout to be stored",
        timeout=30,
        alive=[worker],
    )

    worker.send(signal.SIGTERM)

    assert worker.wait(60) == 0, worker.output()  # not -11 (SIGSEGV in finalization), no hang

"""The subinterpreter worker's watchdog (``tandem.worker.pools.runner.run``): a ``TaskTimeout``
that lands before the task's own code ran (a starved interpreter thread) still ends the attempt
as a timeout the worker decided, with its ``task_finished`` due like any raise."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tandem.brokers.base import StoredTask
from tandem.worker.pools import runner
from tests.support.doubles import running_task


# ``run()`` closes the thread's old database connections at the end: one an earlier test of
# this process left open is touched then.
@pytest.mark.django_db
def test_a_timeout_before_the_tasks_code_ran_is_a_signalled_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def starved(task: StoredTask, current: Any = None) -> Any:
        # The watchdog fires while the attempt is still being prepared (no task code yet).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.001)
        raise AssertionError("the watchdog never fired")

    monkeypatch.setattr("tandem.execution.execute", starved)
    task = running_task(attempt_token="a" * 32)
    outcome = runner.run(task, timeout=0.05)
    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.exception_class_path == "tandem.exceptions.TaskTimeout"
    assert outcome.finished_signal
    assert outcome.attempt_token == task.attempt_token
    assert datetime.now(UTC) >= outcome.finished_at

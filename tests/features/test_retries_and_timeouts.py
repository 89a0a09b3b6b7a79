"""Retries follow the task's own back-off; a task's own timeout beats the pool's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone

from tandem.brokers.base import FAILED, READY, SUCCESSFUL
from tandem.models import TaskRecord
from tests import tasks
from tests.features import tasks as features
from tests.models import Ledger
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness

pytestmark = pytest.mark.django_db(transaction=True)
STATUSES = {s.value for s in TaskResultStatus}


def test_callable_backoff_sets_each_retrys_delay(harness: Harness) -> None:
    clock = FrozenClock()
    result = tasks.flaky_linear.enqueue("linear", 2)  # fails twice; backoff 100 s * attempt
    supervisor = harness.supervisor(workers=1, clock=clock)
    for attempt in (1, 2):
        assert supervisor.step() == 1
        harness.wait_for_outcomes(supervisor, 1)
        supervisor.step()
        row = TaskRecord.objects.get(id=result.id)
        assert row.status == READY and row.status in STATUSES
        # The retry is due backoff(attempt) after the attempt ended (the outcome's real time).
        delay = (row.available_at - timezone.now()).total_seconds()
        assert 100 * attempt - 5 < delay <= 100 * attempt
        assert [e["exception_class_path"] for e in row.errors] == [
            "builtins.RuntimeError"
        ] * attempt
        assert supervisor.step() == 0  # not before its back-off
        clock.move_to(max(row.available_at, supervisor.pools[0].next_poll))
    assert supervisor.step() == 1
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    result.refresh()
    assert (result.status, result.return_value, result.attempts) == (SUCCESSFUL, 3, 3)
    assert len(result.errors) == 2


def test_the_last_failure_ends_failed_with_every_error_kept(drain) -> None:
    result = tasks.hooked_flaky.enqueue("spent", 5)  # max_attempts=2, backoff 0
    drain()
    result.refresh()
    assert (result.status, result.attempts) == (FAILED, 2)
    assert [e.exception_class_path for e in result.errors] == ["builtins.RuntimeError"] * 2
    assert Ledger.objects.filter(key="spent").count() == 2


def test_a_tasks_own_timeout_applies_in_a_pool_without_one(drain, tandem_settings) -> None:
    tandem_settings(pools={"default": {"workers": 1}})  # no pool timeout
    result = tasks.short_timeout_spin.enqueue(2.0)  # timeout=0.5
    row = TaskRecord.objects.get(id=result.id)
    assert row.timeout == 0.5
    drain()
    result.refresh()
    assert result.status == FAILED
    [error] = result.errors
    assert error.exception_class_path == "tandem.exceptions.TaskTimeout"
    assert "longer than its timeout of 0.5s" in error.traceback


def test_the_pool_timeout_applies_to_tasks_without_their_own(drain, tandem_settings) -> None:
    tandem_settings(pools={"default": {"workers": 1, "timeout": 0.4}})
    result = tasks.spin.enqueue(2.0)
    assert TaskRecord.objects.get(id=result.id).timeout is None
    drain()
    result.refresh()
    assert result.status == FAILED
    assert "longer than its timeout of 0.4s" in result.errors[0].traceback


def test_retry_available_at_is_in_the_future_by_the_pool_backoff(harness, tandem_settings) -> None:
    tandem_settings(pools={"default": {"workers": 1, "max_attempts": 2, "backoff": 40}})
    clock = FrozenClock()
    result = tasks.fail.enqueue("x")
    supervisor = harness.supervisor(workers=1, clock=clock)
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    row = TaskRecord.objects.get(id=result.id)
    assert row.status == READY
    # Exponential with jitter: 40 s * 2**0 * [0.5, 1.0] after the attempt ended (real time).
    delay = row.available_at - timezone.now()
    assert timedelta(seconds=15) < delay <= timedelta(seconds=40)


def test_pool_defaults_apply_to_tasks_without_options_and_the_tasks_own_win(
    harness: Harness, tandem_settings
) -> None:
    tandem_settings(pools={"default": {"workers": 3, "max_attempts": 3, "backoff": 1000}})
    clock = FrozenClock()
    plain = tasks.fail.enqueue("pool default")  # no options: the pool's 3 attempts, back-off 1000
    own = features.fails_once_only.enqueue("own-1")  # max_attempts=1 beats the pool's 3
    linear = tasks.flaky_linear.enqueue("own-backoff", 5)  # backoff 100 * attempt beats 1000
    stored = {str(r.id): r.max_attempts for r in TaskRecord.objects.all()}
    assert (stored[plain.id], stored[own.id], stored[linear.id]) == (3, 1, 3)
    supervisor = harness.supervisor(workers=3, clock=clock)
    assert supervisor.step() == 3
    harness.wait_for_outcomes(supervisor, 3)
    supervisor.step()
    now = timezone.now()
    rows = {str(r.id): r for r in TaskRecord.objects.all()}
    assert rows[own.id].status == FAILED  # its own single attempt
    assert rows[plain.id].status == READY
    assert 500 - 5 < (rows[plain.id].available_at - now).total_seconds() <= 1000  # jittered
    assert rows[linear.id].status == READY
    assert 95 < (rows[linear.id].available_at - now).total_seconds() <= 100  # its own, exact


def test_a_tasks_own_timeout_beats_a_shorter_pool_timeout(drain, tandem_settings) -> None:
    tandem_settings(pools={"default": {"workers": 2, "timeout": 0.3}})
    own = features.long_timeout_spin.enqueue(0.8)  # timeout=10
    plain = tasks.spin.enqueue(0.8)  # the pool's 0.3 s
    drain()
    own.refresh()
    plain.refresh()
    assert own.status == SUCCESSFUL
    assert plain.status == FAILED
    assert "longer than its timeout of 0.3s" in plain.errors[0].traceback


def test_a_result_waiting_for_its_retry_shows_when_it_is_due(harness: Harness) -> None:
    """Only Django's four statuses: a retry is READY with ``task.run_after`` at its back-off."""
    clock = FrozenClock()
    result = tasks.flaky_linear.enqueue("due", 1)  # backoff 100 s after attempt 1
    assert result.task.run_after is None
    supervisor = harness.supervisor(workers=1, clock=clock)
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    waiting = tasks.flaky_linear.get_result(result.id)
    assert waiting.status == READY and waiting.status in STATUSES
    assert waiting.task.run_after == TaskRecord.objects.get(id=result.id).available_at
    assert 95 < (waiting.task.run_after - timezone.now()).total_seconds() <= 100
    assert waiting.finished_at is None and len(waiting.errors) == 1

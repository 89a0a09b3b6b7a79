"""``on_success``/``on_failure`` hooks, progress and checkpoints, cancellation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import tandem
from tandem.brokers.base import FAILED, RUNNING, SUCCESSFUL
from tandem.models import TaskRecord
from tests import tasks
from tests.features import tasks as features
from tests.models import Ledger
from tests.support.doubles import FrozenClock, wait_for
from tests.support.harness import Harness

pytestmark = pytest.mark.django_db(transaction=True)


def hook_runs(result_id: str) -> list[str]:
    return list(Ledger.objects.filter(key=f"hook:{result_id}").values_list("worker", flat=True))


def test_on_success_enqueues_the_hook_with_the_result_id(drain) -> None:
    result = tasks.hooked.enqueue(False)
    drain()  # runs the task, then the hook it enqueued
    assert hook_runs(result.id) == ["SUCCESSFUL"]


def test_on_failure_by_dotted_path_runs_once_the_task_failed(drain) -> None:
    result = tasks.hooked.enqueue(True)
    drain()
    result.refresh()
    assert result.status == FAILED
    assert hook_runs(result.id) == ["FAILED"]


def test_hooks_wait_for_the_final_attempt(drain) -> None:
    result = tasks.hooked_flaky.enqueue("hooked-flaky", 1)  # fails once, then succeeds
    drain()
    result.refresh()
    assert (result.status, result.attempts) == (SUCCESSFUL, 2)
    assert hook_runs(result.id) == ["SUCCESSFUL"]  # not after the failed first attempt


def test_a_retried_attempt_resumes_from_its_checkpoint(drain) -> None:
    result = tasks.resumable_count.enqueue("resume", 5, 3)  # attempt 1 raises at step 3
    drain()
    result.refresh()
    assert result.status == SUCCESSFUL
    assert result.return_value == {"started_at": 3, "done": 5}
    assert result.progress == {"done": 5, "total": 5}
    assert tandem.get_progress(result.id) == {"done": 5, "total": 5}
    starts = list(
        Ledger.objects.filter(key="resume").order_by("id").values_list("worker", flat=True)
    )
    assert starts == ["start:0", "start:3"]


def test_cancel_a_ready_task_fails_it_at_once() -> None:
    result = tasks.add.enqueue(1, 2)
    assert tandem.cancel(result.id) == tandem.CancelOutcome.CANCELLED == "cancelled"
    result.refresh()
    assert result.status == FAILED
    assert [e.exception_class_path for e in result.errors] == ["tandem.exceptions.Cancelled"]
    assert "cancelled before it ran" in result.errors[0].traceback
    assert tandem.cancel(result.id) is False  # already finished
    assert tandem.cancel("00000000-0000-0000-0000-000000000000") is False
    assert tandem.cancel("not-a-uuid") is False


def test_cancelled_ready_unique_task_frees_its_key() -> None:
    first = tasks.unique_ledger.enqueue("cancel-me")
    tandem.cancel(first.id)
    assert tasks.unique_ledger.enqueue("cancel-me").id != first.id


def test_a_running_task_sees_the_cancellation_and_is_not_retried(harness: Harness) -> None:
    result = tasks.until_cancelled.using(queue_name="default").enqueue("coop")
    TaskRecord.objects.filter(id=result.id).update(max_attempts=3)
    supervisor = harness.supervisor(workers=1)
    harness.run_in_background(supervisor)
    assert tasks.gate("coop").wait(10)
    outcome = tandem.cancel(result.id)
    assert outcome == tandem.CancelOutcome.REQUESTED == "cancel requested"
    assert outcome  # truthy: `if tandem.cancel(id):` reads "cancelled or asked to stop"
    wait_for(lambda: TaskRecord.objects.get(id=result.id).status == FAILED, "the cancelled task")
    result.refresh()
    assert result.attempts == 1  # never retried
    assert [e.exception_class_path for e in result.errors] == ["tandem.exceptions.Cancelled"]


def reached_worker(supervisor: Any) -> None:
    """Wait until the claimed task is in its worker's slot (not still in the pool's hand-over):
    the heartbeat under test kills only a task a worker has; a later heartbeat (which the
    frozen clock never brings) would kill one that reached it afterwards."""
    pool = supervisor.pools[0].pool
    wait_for(lambda: any(s.task is not None for s in pool._live_slots()), "the task's worker")


def test_process_pool_kills_a_cancelled_task_at_the_heartbeat(
    harness: Harness, tandem_settings: Callable[..., None]
) -> None:
    tandem_settings(pools={"default": {"workers": 1, "executor": "process"}})
    clock = FrozenClock()
    result = tasks.spin.enqueue(60.0)  # ignores cancellation: only a kill stops it
    supervisor = harness.supervisor(workers=1, clock=clock)
    supervisor.step()
    wait_for(lambda: TaskRecord.objects.get(id=result.id).status == RUNNING, "the claim")
    reached_worker(supervisor)
    assert tandem.cancel(result.id) == tandem.CancelOutcome.REQUESTED
    clock.advance(supervisor.options.heartbeat_interval + 1)
    supervisor.step()  # heartbeat: sees the request, kills the child, settles the cancellation
    wait_for(
        lambda: supervisor.step() >= 0 and TaskRecord.objects.get(id=result.id).status == FAILED,
        "the cancellation to be settled",
    )
    result.refresh()
    assert result.status == FAILED
    assert result.errors[-1].exception_class_path == "tandem.exceptions.Cancelled"
    assert "cancelled while it ran" in result.errors[-1].traceback


def test_process_pool_kills_a_running_cancelled_task(
    harness: Harness, tandem_settings: Callable[..., None]
) -> None:
    """Cancelled after it started in its child (not during the child's start-up)."""
    tandem_settings(pools={"default": {"workers": 1, "executor": "process"}})
    clock = FrozenClock()
    warm = tasks.add.enqueue(1, 1)
    supervisor = harness.supervisor(workers=1, clock=clock)
    supervisor.step()
    wait_for(lambda: supervisor.step() >= 0 and not supervisor.in_flight, "the warm-up task")
    warm.refresh()
    assert warm.status == SUCCESSFUL
    result = tasks.timed_spin.enqueue(60.0)

    def claimed() -> bool:
        # Polled until claimed: on a loaded machine the free slot may show up a poll later.
        clock.advance(supervisor.options.poll_interval + 1)
        supervisor.step()
        return TaskRecord.objects.get(id=result.id).status == RUNNING

    wait_for(claimed, "the claim")
    reached_worker(supervisor)
    assert tandem.cancel(result.id) == tandem.CancelOutcome.REQUESTED
    clock.advance(supervisor.options.heartbeat_interval + 1)
    supervisor.step()
    wait_for(
        lambda: supervisor.step() >= 0 and TaskRecord.objects.get(id=result.id).status == FAILED,
        "the cancellation to be settled",
    )
    pool = supervisor.pools[0].pool
    wait_for(lambda: pool.restarts >= 1, "the killed child to be replaced")
    result.refresh()
    assert "its worker process was killed and replaced" in result.errors[-1].traceback


def test_progress_writes_are_throttled_and_flushed_at_the_end(drain) -> None:
    result = tasks.with_progress.enqueue(50)
    drain()
    result.refresh()
    assert result.status == SUCCESSFUL
    assert result.progress == {"step": 50}  # the last call, held back by the throttle, flushed
    assert result.return_value < 50  # far fewer writes than calls


def test_a_retry_reads_the_checkpoint_the_throttle_held_back_when_attempt_one_failed(
    drain,
) -> None:
    result = features.checkpointed.enqueue("held-back")
    drain()
    result.refresh()
    assert (result.status, result.attempts) == (SUCCESSFUL, 2)
    assert result.return_value == {"checkpoint": {"step": 2}, "attempt": 2}
    assert result.progress == {"step": 2}


def test_progress_is_visible_on_the_result_while_the_task_runs(harness: Harness) -> None:
    result = features.progress_then_wait.enqueue("visible")
    assert tandem.get_progress(result.id) is None
    supervisor = harness.supervisor(workers=1)
    harness.run_in_background(supervisor)
    assert tasks.gate("visible:saved").wait(10)
    running = features.progress_then_wait.get_result(result.id)
    assert (running.status, running.progress) == (RUNNING, {"done": 7})
    assert tandem.get_progress(result.id) == {"done": 7}
    result.refresh()
    assert result.progress == {"done": 7}
    tasks.gate("visible").set()
    wait_for(lambda: TaskRecord.objects.get(id=result.id).status == SUCCESSFUL, "the task")

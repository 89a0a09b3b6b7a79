"""The extras end to end on ``RedisBackend``: unique tasks, ``enqueue_many``, cancellation,
progress and checkpoints, hooks, schedules, pruning and retention, and the transaction race
that ``enqueue_on_commit`` exists for. (The broker calls behind them are in tests/contract.)"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.core.management import call_command
from django.db import transaction
from django.tasks import task_backends
from django.tasks.signals import task_enqueued
from django.utils import timezone

import tandem
from tandem.backends.redis import RedisBackend
from tandem.brokers.base import FAILED, READY, RUNNING, SUCCESSFUL, Settlement
from tandem.brokers.redis import RedisBroker
from tests import tasks
from tests.models import Ledger
from tests.support import redis_store
from tests.support.doubles import FrozenClock, wait_for
from tests.support.harness import Harness

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def redis_backend(settings: Any, threads: None) -> Iterator[Callable[..., None]]:
    """TASKS['default'] is a RedisBackend (thread pools); ``apply(**options)`` adds OPTIONS."""
    client = redis_store.client()  # fails (never skips) without Redis
    base = dict(settings.TASKS["default"].get("OPTIONS", {}))

    def apply(**options: Any) -> None:
        settings.TASKS = {
            "default": {
                "BACKEND": redis_store.REDIS_BACKEND,
                "QUEUES": ["default", "critical", "exports"],
                "OPTIONS": {**base, **redis_store.backend_options(), **options},
            }
        }

    apply()
    yield apply
    redis_store.delete_keys(client)


def backend() -> RedisBackend:
    instance = task_backends["default"]
    assert isinstance(instance, RedisBackend)
    return instance


def status(result_id: str) -> str:
    return str(backend().get_result(result_id).status)


# -- the transaction race --------------------------------------------------------------------


def test_a_plain_enqueue_inside_a_transaction_races_the_commit(harness: Harness) -> None:
    """The classic race, shown where it is real (a store outside the transaction): the worker
    runs the task while the row it loads is uncommitted. The database backend's race test
    (test_transactions.py) runs this same scenario and never loses."""
    supervisor = harness.supervisor(workers=1)
    harness.run_in_background(supervisor)
    with transaction.atomic():
        row = Ledger.objects.create(key="uncommitted")
        result = tasks.load_ledger.enqueue(row.pk)
        # Redis is not in the transaction: the task is visible, and runs, before the commit.
        wait_for(lambda: status(result.id) == FAILED, "the task to run inside the transaction")
    result.refresh()
    assert result.errors[0].exception_class_path == "tests.models.Ledger.DoesNotExist"


def test_enqueue_on_commit_closes_the_race(harness: Harness) -> None:
    supervisor = harness.supervisor(workers=2)
    harness.run_in_background(supervisor)
    broker = backend().broker
    keys = [f"committed-{i}" for i in range(10)]
    for key in keys:
        with transaction.atomic():
            row = Ledger.objects.create(key=key)
            tandem.enqueue_on_commit(tasks.load_ledger, (row.pk,))
            if key == keys[0]:  # nothing in Redis before the commit
                assert not broker.has_ready(["default"], timezone.now() + timedelta(days=1))
    wait_for(lambda: len(broker.stats()) > 0 and _finished(broker) == 10, "10 tasks")
    assert sorted(Ledger.objects.values_list("key", flat=True)) == sorted(keys)
    for stats in broker.stats():
        assert stats.ready == stats.running == 0


def _finished(broker: RedisBroker) -> int:
    return broker.count_finished(timezone.now() + timedelta(seconds=1), [SUCCESSFUL])


def test_enqueue_on_commit_enqueues_nothing_on_rollback() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        tandem.enqueue_on_commit(tasks.add, (1, 2))
        raise RuntimeError("rolled back")
    assert backend().broker.count_finished(timezone.now(), [SUCCESSFUL, FAILED]) == 0
    assert not backend().broker.has_ready(["default"], timezone.now() + timedelta(days=1))


def test_a_plain_enqueue_is_not_rolled_back_with_the_transaction() -> None:
    """What the Redis docs say: a store outside the transaction keeps the task."""
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        raise RuntimeError("rolled back")
    assert status(result.id) == READY


# -- unique tasks, enqueue_many ----------------------------------------------------------------


def test_unique_tasks_return_the_active_one_until_it_finished(drain) -> None:
    first = tasks.unique_ledger.enqueue("redis-u")
    again = tasks.unique_ledger.enqueue("redis-u")
    assert again.id == first.id
    assert tasks.unique_ledger.enqueue("redis-v").id != first.id
    drain()
    assert Ledger.objects.filter(key="redis-u").count() == 1
    assert tasks.unique_ledger.enqueue("redis-u").id != first.id


def test_a_running_unique_task_holds_its_key(harness: Harness) -> None:
    first = tasks.unique_ledger.enqueue("held")
    broker = backend().broker
    now = timezone.now()
    [claimed] = broker.claim(["default"], 1, "w", now + timedelta(minutes=1), now)
    assert claimed.id == first.id and status(first.id) == RUNNING
    assert tasks.unique_ledger.enqueue("held").id == first.id
    broker.settle(
        [
            Settlement(
                id=first.id,
                attempt_token=broker.get(first.id).attempt_token,
                worker_id="w",
                status=SUCCESSFUL,
                finished_at=timezone.now(),
            )
        ]
    )
    assert tasks.unique_ledger.enqueue("held").id != first.id


@contextmanager
def requests_sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The requests written to Redis inside (a pipeline or a MULTI is one): the round trips."""
    sent: list[bytes] = []
    real = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else bytes(command))
        real(self, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    yield sent
    monkeypatch.undo()


def test_enqueue_many_is_one_round_trip_per_batch_and_signals_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    def receiver(sender: object, task_result: Any, **kwargs: object) -> None:
        seen.append(task_result.id)

    tasks.add.enqueue(0, 0)  # connects: the count below is of the requests alone
    task_enqueued.connect(receiver)
    try:
        with requests_sent(monkeypatch) as sent:
            results = tandem.enqueue_many(tasks.add, [((i, i), {}) for i in range(1200)])
    finally:
        task_enqueued.disconnect(receiver)
    assert len(sent) == 3  # 500 + 500 + 200
    # A task without a unique key is stored by plain writes in a MULTI, no script.
    assert all(request.startswith(b"*1\r\n$5\r\nMULTI\r\n") for request in sent)
    assert b"EVALSHA" not in b"".join(sent)
    assert seen == [r.id for r in results]
    assert [r.args for r in results[:2]] == [[0, 0], [1, 1]]
    assert status(results[-1].id) == READY


def test_a_unique_task_is_stored_by_the_push_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks.unique_ledger.enqueue("warm-up")  # loads the script
    with requests_sent(monkeypatch) as sent:
        first = tasks.unique_ledger.enqueue("script")
        again = tasks.unique_ledger.enqueue("script")
    # One script call each (the second then reads the holder's result: its hash).
    assert [request.split(b"\r\n")[2] for request in sent] == [b"EVALSHA", b"EVALSHA", b"HGETALL"]
    assert again.id == first.id
    assert status(first.id) == READY


# -- cancellation, progress, checkpoints, hooks -------------------------------------------------


def test_cancel_a_ready_task_fails_it_at_once() -> None:
    result = tasks.add.enqueue(1, 2)
    assert tandem.cancel(result.id) == tandem.CancelOutcome.CANCELLED
    result.refresh()
    assert result.status == FAILED
    assert result.errors[0].exception_class_path == "tandem.exceptions.Cancelled"
    assert tandem.cancel(result.id) is False


def test_a_running_task_sees_the_cancellation(harness: Harness) -> None:
    result = tasks.until_cancelled.enqueue("redis-coop")
    supervisor = harness.supervisor(workers=1)
    harness.run_in_background(supervisor)
    assert tasks.gate("redis-coop").wait(10)
    assert tandem.cancel(result.id) == tandem.CancelOutcome.REQUESTED
    wait_for(lambda: status(result.id) == FAILED, "the cancelled task")
    result.refresh()
    assert [e.exception_class_path for e in result.errors] == ["tandem.exceptions.Cancelled"]


def test_a_retried_attempt_resumes_from_its_checkpoint(drain) -> None:
    result = tasks.resumable_count.enqueue("redis-resume", 5, 3)
    drain()
    result.refresh()
    assert (result.status, result.attempts) == (SUCCESSFUL, 2)
    assert result.return_value == {"started_at": 3, "done": 5}
    assert tandem.get_progress(result.id) == {"done": 5, "total": 5}


def test_hooks_run_with_the_result_id(drain) -> None:
    result = tasks.hooked.enqueue(True)
    drain()
    assert list(
        Ledger.objects.filter(key=f"hook:{result.id}").values_list("worker", flat=True)
    ) == ["FAILED"]


# -- schedules, pruning, retention -------------------------------------------------------------


def test_two_supervisors_fire_a_scheduled_tick_once(
    harness: Harness, redis_backend: Callable[..., None]
) -> None:
    redis_backend(
        schedule={"every-minute": {"task": "tests.tasks.noop", "cron": "* * * * *"}},
        poll_interval=3600,
    )
    clock = FrozenClock()
    a = harness.supervisor(clock=clock, workers=1)
    b = harness.supervisor(clock=clock, workers=1)
    a.step()
    b.step()
    clock.move_to(a.scheduler.next_at)
    a.step()
    b.step()
    broker = backend().broker
    assert broker.last_tick("every-minute") == clock()
    assert a.claimed + b.claimed == 1
    harness.wait_for_outcomes(a if a.claimed else b, 1)


def test_prune_command_and_retention_delete_old_finished_tasks(
    harness: Harness, redis_backend: Callable[..., None]
) -> None:
    broker = backend().broker
    old_ok, old_failed, new_ok = (tasks.add.enqueue(i, i) for i in range(3))
    now = timezone.now()
    for task_id, final, age in (
        (old_ok.id, SUCCESSFUL, timedelta(days=3)),  # under the 7-day result_ttl
        (old_failed.id, FAILED, timedelta(days=3)),
        (new_ok.id, SUCCESSFUL, timedelta(minutes=1)),
    ):
        [claimed] = broker.claim(["default"], 1, "w", now + timedelta(minutes=1), now)
        assert claimed.id == task_id
        broker.settle(
            [
                Settlement(
                    id=task_id,
                    attempt_token=broker.get(task_id).attempt_token,
                    worker_id="w",
                    status=final,
                    finished_at=now - age,
                )
            ]
        )
    out = io.StringIO()
    call_command("tandem", "prune", "--older-than", "2d", "--status", "successful", stdout=out)
    assert out.getvalue().startswith("Deleted 1 successful task(s) of backend 'default'")
    assert broker.get(old_ok.id) is None and broker.get(old_failed.id) is not None

    redis_backend(retention={"failed": 3600, "successful": None})
    harness.supervisor(workers=1, clock=FrozenClock()).step()  # the first heartbeat prunes
    assert broker.get(old_failed.id) is None
    assert backend().broker.get(new_ok.id) is not None

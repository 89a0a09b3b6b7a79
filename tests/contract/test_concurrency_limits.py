"""Per-key concurrency limits (``concurrency_key`` / ``concurrency_limit`` / ``on_limit``) on
every broker: a key's slots are taken by claims and freed only by the attempt that took them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from tandem.brokers.base import (
    FAILED,
    READY,
    RUNNING,
    Broker,
    ErrorRecord,
    NewTask,
    Settlement,
)
from tests.contract.conftest import T0, at, succeed, token

pytestmark = pytest.mark.django_db

Push = Callable[..., NewTask]


def keyed(push: Push, key: str = "acct-1", limit: int = 1, **fields: Any) -> NewTask:
    return push(concurrency_key=key, concurrency_limit=limit, **fields)


def claim_ids(broker: Broker, limit: int = 10, worker: str = "w1", now: float = 0) -> list[str]:
    return [t.id for t in broker.claim(["default"], limit, worker, at(now + 60), at(now))]


def test_a_limit_of_one_starts_one_task_per_key_and_the_rest_wait(broker: Broker, push: Push):
    first, second, third = keyed(push), keyed(push), keyed(push)
    other_key = keyed(push, key="acct-2")
    plain = push()

    assert claim_ids(broker) == [first.id, other_key.id, plain.id]

    for waiting in (second, third):
        stored = broker.get(waiting.id)
        assert (stored.status, stored.attempts, stored.worker_id) == (READY, 0, "")
    assert claim_ids(broker) == []
    assert broker.has_ready(["default"], T0) is False  # only tasks that must wait are left


def test_the_stored_task_keeps_its_flow_control(broker: Broker, push: Push):
    task = keyed(push, key="tenant:7", limit=3, on_limit="discard")

    stored = broker.get(task.id)
    assert (stored.concurrency_key, stored.concurrency_limit, stored.on_limit) == (
        "tenant:7",
        3,
        "discard",
    )
    assert broker.get(push().id).concurrency_key is None


def test_a_limit_of_two_runs_two_at_once(broker: Broker, push: Push):
    tasks = [keyed(push, limit=2) for _ in range(4)]

    assert claim_ids(broker) == [tasks[0].id, tasks[1].id]
    assert claim_ids(broker, worker="w2") == []


def test_a_settled_attempt_frees_its_slot(broker: Broker, push: Push):
    first, second = keyed(push), keyed(push)
    [claimed] = claim_ids(broker)

    assert broker.settle([succeed(claimed, "w1", at(5))]) == 1

    assert claim_ids(broker, worker="w2", now=5) == [second.id]
    assert first.id == claimed


def test_a_retry_frees_the_slot_and_waits_its_turn(broker: Broker, push: Push):
    first, second = keyed(push), keyed(push)
    claim_ids(broker)
    retry = Settlement(
        id=first.id,
        worker_id="w1",
        attempt_token=token(first.id),
        status=READY,
        finished_at=at(5),
        error=ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError\n"),
        retry_at=at(30),
    )

    assert broker.settle([retry]) == 1

    assert claim_ids(broker, now=5) == [second.id]  # the retry is not due yet
    assert claim_ids(broker, now=40) == []  # due, but the key is full
    broker.settle([succeed(second.id, "w1", at(41))])
    assert claim_ids(broker, now=42) == [first.id]
    assert broker.get(first.id).attempts == 2


def test_a_released_attempt_frees_its_slot(broker: Broker, push: Push):
    first, second = keyed(push), keyed(push)
    claim_ids(broker)

    assert broker.release("w1", {first.id: token(first.id)}, at(5)) == 1

    assert claim_ids(broker, worker="w2", now=5) == [second.id]  # available before first
    assert broker.get(first.id).status == READY


def test_a_recovered_holder_frees_its_slot(broker: Broker, push: Push):
    """A worker killed with ``kill -9`` holds no lock: its slot is freed with its lease."""
    first, second = keyed(push, max_attempts=1), keyed(push)
    claim_ids(broker)  # lease until at(60); the worker dies
    assert claim_ids(broker, worker="w2", now=30) == []

    recovered = broker.recover_expired(at(61), recovery_max_attempts=1)

    assert [(r.id, r.status) for r in recovered] == [(first.id, FAILED)]
    assert claim_ids(broker, worker="w2", now=61) == [second.id]


def test_only_the_attempt_that_took_the_slot_frees_it(broker: Broker, push: Push):
    first, second = keyed(push, max_attempts=3), keyed(push)
    claim_ids(broker)
    stale = token(first.id)
    broker.recover_expired(at(61), recovery_max_attempts=3)
    assert claim_ids(broker, worker="w2", now=61, limit=1) == [second.id]
    broker.settle([succeed(second.id, "w2", at(61))])
    assert claim_ids(broker, worker="w2", now=61) == [first.id]  # a new attempt, a new slot
    third = keyed(push)

    late = succeed(first.id, "w1", at(62), attempt=stale)
    assert broker.settle([late]) == 0  # the stale attempt's ending is refused...
    assert broker.release("w1", {first.id: stale}, at(62)) == 0

    assert claim_ids(broker, worker="w3", now=62) == []  # ...and frees nobody's slot
    assert broker.get(third.id).status == READY
    broker.settle([succeed(first.id, "w2", at(63))])
    assert claim_ids(broker, worker="w3", now=63) == [third.id]


def test_discard_ends_a_task_that_would_wait_failed_without_running(broker: Broker, push: Push):
    first = keyed(push, on_limit="discard")
    dropped = keyed(push, on_limit="discard", unique_key="once")

    assert claim_ids(broker) == [first.id]

    stored = broker.get(dropped.id)
    assert (stored.status, stored.attempts, stored.started_at) == (FAILED, 0, None)
    assert stored.finished_at == T0
    [error] = stored.errors
    assert error.exception_class_path == "tandem.exceptions.ConcurrencyLimited"
    assert '"acct-1" already had 1 running task(s)' in error.traceback
    assert stored.unique_key is None  # its unique key is free again
    assert claim_ids(broker, worker="w2") == []


def test_discard_runs_a_task_whose_key_has_a_free_slot(broker: Broker, push: Push):
    task = keyed(push, limit=2, on_limit="discard")
    keyed(push, key="other", on_limit="discard")

    assert task.id in claim_ids(broker, limit=1)
    assert broker.get(task.id).status == RUNNING


def test_waiting_tasks_do_not_hold_back_other_work(broker: Broker, push: Push):
    """Tasks waiting for a full key are not claimable, so lower-priority work goes first."""
    holder = keyed(push, priority=5)
    claim_ids(broker, limit=1)
    for _ in range(5):
        keyed(push, priority=5)
    plain = push(priority=0)

    assert claim_ids(broker, limit=1, worker="w2") == [plain.id]
    assert broker.get(holder.id).status == RUNNING


def test_the_starvation_claim_keeps_the_limit(broker: Broker, push: Push):
    first, second = keyed(push), keyed(push)

    claimed = broker.claim_starved(["default"], 10, "w1", at(60), T0, starved_before=T0)

    assert [t.id for t in claimed] == [first.id]
    assert broker.get(second.id).status == READY


def test_keys_are_per_backend(broker: Broker, other_broker: Broker, push: Push, make_task):
    mine = keyed(push)
    theirs = make_task(backend="other", concurrency_key="acct-1")
    other_broker.push([theirs])

    assert claim_ids(broker) == [mine.id]
    assert [t.id for t in other_broker.claim(["default"], 10, "w2", at(60), T0)] == [theirs.id]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limit", [1, 2])
def test_concurrent_claimers_never_exceed_the_limit(broker: Broker, make_task, limit: int):
    """Three threads claim at once, round after round; each round's winners then settle.

    transaction=True: each thread has its own connection and sees only committed rows.
    """
    tasks = [make_task(concurrency_key="shared", concurrency_limit=limit) for _ in range(6)]
    broker.push(tasks)
    threads = 3
    barrier = threading.Barrier(threads, timeout=60)
    per_round: list[list[str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(worker_id: str) -> None:
        try:
            for n in range(len(tasks)):
                if worker_id == "w0":
                    per_round.append([])
                barrier.wait()
                batch = broker.claim(["default"], 2, worker_id, at(600), at(n))
                with lock:
                    per_round[n].extend(t.id for t in batch)
                barrier.wait()
                for task in batch:
                    broker.settle([succeed(task.id, worker_id, at(n))])
                barrier.wait()
        except BaseException as exc:  # a failing thread must fail the test, not hang it
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    workers = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert all(len(ids) <= limit for ids in per_round), per_round
    assert [len(ids) for ids in per_round[: len(tasks) // limit]] == [limit] * (len(tasks) // limit)
    done = [i for ids in per_round for i in ids]
    assert sorted(done) == sorted(t.id for t in tasks)  # each ran exactly once
    assert len(per_round) == len(tasks)


def test_an_ending_refused_by_the_lease_guard_frees_nothing(broker: Broker, push: Push):
    first, second = keyed(push), keyed(push)
    claim_ids(broker)
    current = token(first.id)

    assert broker.settle([succeed(first.id, "intruder", at(5), attempt=current)]) == 0
    assert broker.release("intruder", {first.id: current}, at(5)) == 0

    assert claim_ids(broker, worker="w2", now=5) == []  # the holder still runs: key full
    assert broker.get(second.id).status == READY

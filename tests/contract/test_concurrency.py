"""Concurrent claims: threads claiming from one store never share a task and leave none behind."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tandem.brokers.base import RUNNING
from tests.contract.conftest import T0, at

TASKS = 200
THREADS = 4
BATCH = 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_are_disjoint_and_complete(broker, make_task):
    """Four threads claim in lock-step rounds, so every round is a four-way race.

    transaction=True: each thread has its own connection (Django's are per thread; on SQLite each
    opens the test database file) and sees only committed rows.
    """
    broker.push([make_task(priority=i % 7) for i in range(TASKS)])
    barrier = threading.Barrier(THREADS, timeout=120)  # a hang fails the test instead
    claimed: dict[str, list[str]] = {f"w{n}": [] for n in range(THREADS)}
    round_counts: list[int] = []
    errors: list[BaseException] = []
    count_lock = threading.Lock()

    def claim_until_empty(worker_id: str) -> None:
        try:
            while True:
                barrier.wait()  # start the round together
                if worker_id == "w0":
                    round_counts.append(0)
                barrier.wait()
                batch = broker.claim(["default"], BATCH, worker_id, at(600), T0)
                claimed[worker_id].extend(t.id for t in batch)
                with count_lock:
                    round_counts[-1] += len(batch)
                barrier.wait()  # everyone has claimed: stop together when the round was empty
                if round_counts[-1] == 0:
                    return
        except BaseException as exc:  # a failing thread must fail the test, not hang it
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=claim_until_empty, args=(w,)) for w in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    all_claimed = [task_id for ids in claimed.values() for task_id in ids]
    assert len(all_claimed) == TASKS
    assert len(set(all_claimed)) == TASKS
    # While at least THREADS * BATCH tasks remain, every racer of a round gets a full batch.
    assert all(len(ids) >= BATCH * (TASKS // (THREADS * BATCH)) for ids in claimed.values())
    for worker_id, ids in claimed.items():
        for task_id in ids:
            task = broker.get(task_id)
            assert (task.status, task.worker_id, task.worker_ids) == (
                RUNNING,
                worker_id,
                (worker_id,),
            )
    assert broker.has_ready(["default"], T0) is False

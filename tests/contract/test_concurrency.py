"""Concurrent claims: threads claiming from one store never share a task and leave none behind."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tandem.brokers.base import RUNNING
from tests.contract.conftest import T0, at

TASKS = 200
THREADS = 4


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_are_disjoint_and_complete(broker, make_task):
    # transaction=True: each thread opens its own connection (Django's are per thread) and must
    # see committed rows; on SQLite every thread gets its own connection to the test file.
    broker.push([make_task(priority=i % 7) for i in range(TASKS)])
    barrier = threading.Barrier(THREADS)
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def claim_until_empty(worker_id: str) -> None:
        mine: list[str] = []
        try:
            barrier.wait()
            while batch := broker.claim(["default"], 3, worker_id, at(600), T0):
                mine.extend(t.id for t in batch)
        except BaseException as exc:  # reported below: a failing thread must fail the test
            errors.append(exc)
        finally:
            claimed[worker_id] = mine
            connection.close()

    threads = [
        threading.Thread(target=claim_until_empty, args=(f"w{n}",)) for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    all_claimed = [task_id for ids in claimed.values() for task_id in ids]
    assert len(all_claimed) == TASKS
    assert len(set(all_claimed)) == TASKS
    for worker_id, ids in claimed.items():
        for task_id in ids:
            task = broker.get(task_id)
            assert (task.status, task.worker_id, task.worker_ids) == (
                RUNNING,
                worker_id,
                (worker_id,),
            )
    assert broker.has_ready(["default"], T0) is False

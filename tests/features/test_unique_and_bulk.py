"""Unique tasks return the active task's result; ``enqueue_many`` stores in few round trips."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.tasks.signals import task_enqueued
from django.test.utils import CaptureQueriesContext

import tandem
from tandem.brokers.base import READY, SUCCESSFUL
from tandem.brokers.database import TABLE
from tandem.models import TaskRecord
from tandem.serialization import NotJSONError
from tests import tasks
from tests.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def enqueued() -> Any:
    seen: list[str] = []

    def receiver(sender: object, task_result: Any, **kwargs: object) -> None:
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    yield seen
    task_enqueued.disconnect(receiver)


def test_equal_unique_task_returns_the_active_one_without_a_signal(drain, enqueued) -> None:
    first = tasks.unique_ledger.enqueue("u")
    second = tasks.unique_ledger.enqueue("u")
    other = tasks.unique_ledger.enqueue("v")
    assert second.id == first.id and second.status == READY
    assert other.id != first.id
    assert enqueued == [first.id, other.id]
    assert TaskRecord.objects.filter(task_path="tests.tasks.unique_ledger").count() == 2
    drain()
    assert Ledger.objects.filter(key="u").count() == 1
    # Finished: the key is free again.
    third = tasks.unique_ledger.enqueue("u")
    assert third.id != first.id
    assert TaskRecord.objects.get(id=first.id).unique_key is None
    assert TaskRecord.objects.get(id=third.id).unique_key is not None


def test_unique_key_chooses_which_arguments_make_tasks_equal() -> None:
    a = tasks.per_user.enqueue(1, note="x")
    b = tasks.per_user.enqueue(1, note="y")
    c = tasks.per_user.enqueue(2, note="x")
    assert a.id == b.id != c.id
    assert b.kwargs == {"note": "x"}  # the existing task's own arguments


def test_aenqueue_of_a_unique_task_returns_the_active_one() -> None:
    first = async_to_sync(tasks.unique_ledger.aenqueue)("async")
    second = async_to_sync(tasks.unique_ledger.aenqueue)("async")
    assert second.id == first.id


def test_enqueue_many_stores_each_item_in_order_and_signals_each(enqueued) -> None:
    items = [((i, i), {}) for i in range(1200)]
    with CaptureQueriesContext(connection) as queries:
        results = tandem.enqueue_many(tasks.add, items)
    inserts = [q for q in queries.captured_queries if f"INSERT INTO {TABLE}" in q["sql"]]
    assert len(inserts) == 3  # one INSERT per batch of 500, on every database
    assert [r.args for r in results] == [[i, i] for i in range(1200)]
    assert enqueued == [r.id for r in results]
    assert TaskRecord.objects.filter(task_path="tests.tasks.add").count() == 1200


def test_enqueue_many_runs_them_all(drain) -> None:
    results = tandem.enqueue_many(tasks.add, [((1, 2), {}), ((3,), {"b": 4})])
    drain()
    for result in results:
        result.refresh()
    assert [(r.status, r.return_value) for r in results] == [(SUCCESSFUL, 3), (SUCCESSFUL, 7)]


def test_enqueue_many_with_a_bad_item_stores_nothing() -> None:
    with pytest.raises(NotJSONError, match=r"args\[0\] is a builtins.object"):
        tandem.enqueue_many(tasks.echo, [((1,), {}), ((object(),), {})])
    with pytest.raises(TypeError, match=r"item 1 must be an \(args, kwargs\) pair, got 5"):
        tandem.enqueue_many(tasks.echo, [((1,), {}), 5])  # type: ignore[list-item]
    assert not TaskRecord.objects.exists()


def test_enqueue_many_of_unique_tasks_deduplicates_within_and_across_batches() -> None:
    results = tandem.enqueue_many(tasks.unique_ledger, [(("a",), {}), (("b",), {}), (("a",), {})])
    assert results[0].id == results[2].id != results[1].id
    again = tandem.enqueue_many(tasks.unique_ledger, [(("b",), {})])
    assert again[0].id == results[1].id
    assert TaskRecord.objects.count() == 2

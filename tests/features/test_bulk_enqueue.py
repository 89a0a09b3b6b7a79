"""``enqueue_many``'s fast paths keep Django's contract: the rows are those of the plain path
(Django's cursor), the results those Django's constructor makes, every ``task_enqueued`` receiver
hears of every task, and the whole call is one transaction on the database backend."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.tasks import TaskResultStatus
from django.tasks.signals import task_enqueued
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import tandem
from tandem import wakeup
from tandem.backends.base import new_task_id
from tandem.backends.results import TandemTaskResult, ready_result
from tandem.brokers.base import SUCCESSFUL
from tandem.brokers.database import TABLE
from tandem.brokers.database_rows import INSERT_BATCH
from tandem.models import TaskRecord
from tests import tasks

pytestmark = pytest.mark.django_db(transaction=True)

#: Arguments of every kind JSON holds (and a tuple, stored as an array).
ITEMS: list[tuple[Any, dict[str, Any]]] = [
    ((), {}),
    ((1, "two", 3.5, None, True), {}),
    ((), {"nested": {"list": [1, [2, {"x": None}]], "tuple": (1, 2)}, "é": "ü"}),
    (["a"], {"big": 2**70, "neg": -0.0, "small": 1e-300}),
    ((b"bytes",), {}),  # not plain: Django's normalize_json makes it a string
]


def raw_rows(ids: list[str]) -> list[tuple[Any, ...]]:
    """The stored rows of ``ids`` as the driver returns them, in that order."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {TABLE}")
        columns = [c[0] for c in cursor.description]
        rows = {str(row[0]).replace("-", ""): row for row in cursor.fetchall()}
    assert columns[0] == "id"
    return [rows[i.replace("-", "")] for i in ids]


def test_the_fast_insert_writes_the_rows_djangos_cursor_writes() -> None:
    """The same tasks stored at once with the query log off (SQLite's fast path; PostgreSQL's
    arrays with the columns equal in every row as one parameter each), at once with the query
    log on (Django's cursor, ``%s``), and one by one (one-row statements) give the same rows,
    column for column, the id aside."""
    assert not connection.queries_logged and not connection.execute_wrappers  # the fast path
    backend = tasks.echo.get_backend()
    later = tasks.echo.using(run_after=timezone.now() + timedelta(hours=1), priority=7)
    made = [
        backend._new_task(task, args, kwargs)
        for task in (tasks.echo, later)
        for args, kwargs in ITEMS
    ]
    backend.broker.push(made)
    logged = [replace(t, id=new_task_id()) for t in made]
    with CaptureQueriesContext(connection):
        backend.broker.push(logged)
    alone = [replace(t, id=new_task_id()) for t in made]
    for t in alone:
        backend.broker.push([t])
    fast = raw_rows([t.id for t in made])
    assert [str(row[0]).replace("-", "") for row in fast] == [t.id.replace("-", "") for t in made]
    for other in (logged, alone):
        assert [row[1:] for row in raw_rows([t.id for t in other])] == [row[1:] for row in fast]
    # and with every column equal but the id (one task, no arguments)
    same = [backend._new_task(tasks.noop, (), {}) for _ in range(3)]
    same = [replace(t, enqueued_at=same[0].enqueued_at) for t in same]
    backend.broker.push(same)
    rows = raw_rows([t.id for t in same])
    assert rows[0][1:] == rows[1][1:] == rows[2][1:]
    assert len({row[0] for row in rows}) == 3


def test_enqueue_many_stores_what_enqueue_stores() -> None:
    one_by_one = [tasks.echo.enqueue(*args, **kwargs) for args, kwargs in ITEMS]
    many = tandem.enqueue_many(tasks.echo, ITEMS)
    varying = {"id", "enqueued_at", "available_at"}
    for single, bulk in zip(one_by_one, many, strict=True):
        assert bulk.args == single.args and bulk.kwargs == single.kwargs
        a, b = (TaskRecord.objects.filter(id=r.id).values().get() for r in (single, bulk))
        assert {k: v for k, v in a.items() if k not in varying} == {
            k: v for k, v in b.items() if k not in varying
        }
        assert b["available_at"] == b["enqueued_at"] == bulk.enqueued_at


def test_enqueue_many_results_are_those_djangos_constructor_makes() -> None:
    results = tandem.enqueue_many(tasks.echo, ITEMS)
    for result, (args, kwargs) in zip(results, ITEMS, strict=True):
        built = TandemTaskResult(
            task=tasks.echo,
            id=result.id,
            status=TaskResultStatus.READY,
            enqueued_at=result.enqueued_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend="default",
            errors=[],
            worker_ids=[],
        )
        assert result == built
        assert type(result) is TandemTaskResult and result.progress is None
        assert result.enqueued_at == TaskRecord.objects.get(id=result.id).enqueued_at
        with pytest.raises(ValueError, match="not finished"):
            result.return_value  # noqa: B018
    assert results[1].args == [1, "two", 3.5, None, True]
    assert results[2].kwargs["nested"]["tuple"] == [1, 2]  # as read back from the store
    assert results[4].args == ["bytes"]


def test_a_result_does_not_share_the_callers_arguments() -> None:
    kwargs: dict[str, Any] = {"items": [1, 2]}
    [result] = tandem.enqueue_many(tasks.echo, [((), kwargs)])
    kwargs["items"].append(3)
    assert result.kwargs == {"items": [1, 2]}


def test_ready_result_equals_the_constructed_one_field_by_field() -> None:
    now = timezone.now()
    made = ready_result(tasks.add, "id-1", now, [1, 2], {"k": [3]}, "default")
    built = TandemTaskResult(
        task=tasks.add,
        id="id-1",
        status=TaskResultStatus.READY,
        enqueued_at=now,
        started_at=None,
        finished_at=None,
        last_attempted_at=None,
        args=[1, 2],
        kwargs={"k": [3]},
        backend="default",
        errors=[],
        worker_ids=[],
    )
    assert made == built
    assert made.errors is not built.errors  # each result its own lists


def test_the_ids_are_random_version_4_uuids() -> None:
    results = tandem.enqueue_many(tasks.noop, [((), {})] * 200)
    ids = [uuid.UUID(r.id) for r in results]
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert [str(i) for i in ids] == [r.id for r in results]
    assert len(set(ids)) == 200


def test_every_receiver_hears_of_every_task(drain) -> None:
    heard: list[str] = []

    def receiver(sender: object, task_result: Any, **kwargs: object) -> None:
        heard.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        results = tandem.enqueue_many(tasks.add, [((i, i), {}) for i in range(INSERT_BATCH + 3)])
    finally:
        task_enqueued.disconnect(receiver)
    assert heard == [r.id for r in results]


def test_djangos_logging_receiver_logs_every_task_at_debug(caplog) -> None:
    """Alone, Django's own receiver is skipped only while its logger would log nothing."""
    with caplog.at_level(logging.INFO, logger="django.tasks"):
        tandem.enqueue_many(tasks.noop, [((), {})] * 3)
    assert not [r for r in caplog.records if "enqueued" in r.getMessage()]
    with caplog.at_level(logging.DEBUG, logger="django.tasks"):
        results = tandem.enqueue_many(tasks.noop, [((), {})] * 3)
    logged = [r.getMessage() for r in caplog.records if "enqueued" in r.getMessage()]
    assert logged == [
        f"Task id={r.id} path=tests.tasks.noop enqueued backend=default" for r in results
    ]


def test_unique_tasks_deduplicate_across_insert_batches() -> None:
    keys = 700
    heard: list[str] = []

    def receiver(sender: object, task_result: Any, **kwargs: object) -> None:
        heard.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        results = tandem.enqueue_many(
            tasks.unique_ledger, [((f"k{i % keys}",), {}) for i in range(1200)]
        )
    finally:
        task_enqueued.disconnect(receiver)
    assert TaskRecord.objects.count() == keys
    assert [r.id for r in results[keys:]] == [r.id for r in results[: 1200 - keys]]
    assert heard == [r.id for r in results[:keys]]  # the new ones only, each once


def test_enqueue_many_is_one_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """More than one INSERT's worth of tasks: a failure in a later statement stores none, and
    no receiver hears of any."""
    backend = tasks.noop.get_backend()
    dialect = backend.broker.dialect
    calls = {"n": 0}
    insert = dialect.insert_tasks

    def failing_second(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the store went away")
        insert(*args, **kwargs)

    heard: list[str] = []

    def receiver(sender: object, task_result: Any, **kwargs: object) -> None:
        heard.append(task_result.id)

    monkeypatch.setattr(dialect, "insert_tasks", failing_second)
    task_enqueued.connect(receiver)
    try:
        with pytest.raises(RuntimeError, match="went away"):
            tandem.enqueue_many(tasks.noop, [((), {})] * (INSERT_BATCH * 2 + 1))
    finally:
        task_enqueued.disconnect(receiver)
    assert calls["n"] == 2
    assert not TaskRecord.objects.exists()
    assert heard == []


def test_enqueue_many_commits_once_then_wakes(monkeypatch: pytest.MonkeyPatch) -> None:
    woken: list[tuple[str, str, bool]] = []
    monkeypatch.setattr(
        wakeup,
        "notify",
        lambda alias, queue: woken.append((alias, queue, connection.in_atomic_block)),
    )
    with transaction.atomic():
        tandem.enqueue_many(tasks.noop, [((), {})] * (INSERT_BATCH + 1))
        tandem.enqueue_many(tasks.critical_noop, [((), {})] * 2)
        assert woken == []  # nothing to see before the commit
    assert sorted(set(woken)) == [("default", "critical", False), ("default", "default", False)]
    assert TaskRecord.objects.count() == INSERT_BATCH + 3


def test_a_rolled_back_enqueue_many_leaves_no_task() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        tandem.enqueue_many(tasks.noop, [((), {})] * (INSERT_BATCH + 1))
        raise RuntimeError("the view failed")
    assert not TaskRecord.objects.exists()


def test_an_execute_wrapper_sees_the_insert(drain) -> None:
    """With an execute wrapper installed, the INSERT goes through Django's cursor (as every
    other statement), and the tasks run."""
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        results = tandem.enqueue_many(tasks.add, [((1, 2), {}), ((3, 4), {})])
    assert [s for s in seen if f"INSERT INTO {TABLE}" in s]
    drain()
    for result in results:
        result.refresh()
    assert [(r.status, r.return_value) for r in results] == [(SUCCESSFUL, 3), (SUCCESSFUL, 7)]

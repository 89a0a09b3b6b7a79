"""The worker's per-task statements on SQLite (claims, settles, the paused queues) run on the
connection's own sqlite3 cursor (``dialects.sqlite.QmarkCursor``) when nothing watches the
queries: they must write and return exactly what Django's cursor does, fall back to it when
the queries are logged or wrapped, and a pause must still stop the next claim.

On PostgreSQL and MariaDB both paths are Django's cursor: the comparisons hold trivially there.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils.dateparse import parse_datetime

from tandem.brokers.base import READY, RUNNING, ErrorRecord, NewTask, Settlement, StoredTask
from tandem.brokers.base import load_json as load
from tandem.brokers.database import TABLE, DatabaseBroker
from tandem.brokers.database_rows import (
    ARGUMENT_COLUMNS,
    COLUMNS,
    DATETIME_COLUMNS,
    JSON_COLUMNS,
    row_to_task,
)
from tandem.brokers.dialects import dialect_for
from tests.contract.conftest import ALIAS, T0, at

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = at(60)
#: Columns a claim sets differently in every attempt (the id, the attempt's token).
OWN = {"id", "attempt_token"}


def sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's cursor and claim")


def new_tasks(queue: str) -> list[NewTask]:
    """Tasks of every shape a claim handles: arguments, priorities, a due time in the past, a
    trace context, a concurrency key (claimed once it holds a slot), a task rate."""
    base = {
        "backend": ALIAS,
        "queue_name": queue,
        "task_path": "tests.tasks.add",
        "takes_context": False,
        "kwargs": {},
        "max_attempts": 3,
    }
    shapes: list[dict[str, Any]] = [
        {"priority": 0, "args": [1, 2]},
        {"priority": 5, "args": [], "kwargs": {"x": [1, {"y": None}], "é": "ü"}},
        {"priority": -3, "args": ["a"], "run_after": at(-500), "timeout": 2.5},
        {"priority": 0, "args": [3, 4], "trace_context": {"traceparent": "00-ab-cd-01"}},
        {"priority": 1, "args": [5, 6], "concurrency_key": "k", "concurrency_limit": 2},
        {"priority": 1, "args": [7, 8], "rate_limit": "100/m", "task_path": "tests.tasks.echo"},
    ]
    return [
        NewTask(
            id=str(uuid.uuid4()),
            enqueued_at=at(-1000 + n),
            run_after=shape.pop("run_after", None),
            **{**base, **shape},
        )
        for n, shape in enumerate(shapes)
    ]


def same(task: StoredTask) -> dict[str, Any]:
    """``task``'s fields less those of its own (id, attempt token)."""
    return {f.name: getattr(task, f.name) for f in fields(task) if f.name not in OWN}


def stored_rows(ids: list[str]) -> list[tuple[Any, ...]]:
    """The stored rows of ``ids`` (every column but id and attempt token), in that order."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {TABLE}")
        names = [c[0] for c in cursor.description]
        rows = {str(uuid.UUID(str(row[0]))): row for row in cursor.fetchall()}
    keep = [i for i, name in enumerate(names) if name not in OWN]
    return [tuple(rows[i][k] for k in keep) for i in ids]


def claim_all(broker: DatabaseBroker, queue: str, **options: Any) -> list[StoredTask]:
    """Claim every task of ``queue`` as the supervisor's round does (in ``transaction()``),
    with a retried task first failed once (an error history, two worker ids)."""
    claimed: list[StoredTask] = []
    with broker.transaction():
        claimed += broker.claim([queue], 1, "w1", LEASE, T0, **options)
    retry = claimed[0]
    with broker.transaction():
        broker.settle(
            [
                Settlement(
                    id=retry.id,
                    worker_id="w1",
                    attempt_token=retry.attempt_token,
                    status=READY,
                    finished_at=at(1),
                    error=ErrorRecord(exception_class_path="x.Boom", traceback="tb"),
                    retry_at=at(2),
                )
            ]
        )
    with broker.transaction():
        claimed = broker.claim([queue], 100, "w2", at(70), at(3), **options)
    return claimed


@pytest.mark.parametrize("rate_limit", [None, "1000/s"])
def test_a_claim_returns_and_writes_what_djangos_cursor_does(rate_limit: str | None) -> None:
    broker = DatabaseBroker(ALIAS, store_clock=False)
    fast_tasks, logged_tasks = new_tasks("fast"), new_tasks("logged")
    broker.push(fast_tasks + logged_tasks)

    assert not connection.queries_logged and not connection.execute_wrappers  # the fast path
    fast = claim_all(broker, "fast", rate_limit=rate_limit)
    with CaptureQueriesContext(connection) as queries:
        logged = claim_all(broker, "logged", rate_limit=rate_limit)
    assert any(q["sql"].startswith(f"UPDATE {TABLE}") for q in queries.captured_queries)

    assert len(fast) == len(fast_tasks) and {t.status for t in fast} == {RUNNING}
    # The same tasks, claimed in the same order, with the same fields (less the queue name).
    assert [replace(t, queue_name="") for t in map(_no_own, fast)] == [
        replace(t, queue_name="") for t in map(_no_own, logged)
    ]
    assert any(t.errors and len(t.worker_ids) == 2 for t in fast)
    fast_ids, logged_ids = [t.id for t in fast], [t.id for t in logged]
    queue_at = COLUMNS.index("queue_name") - 1  # "id" is not in the stored rows
    assert [r[:queue_at] + r[queue_at + 1 :] for r in stored_rows(fast_ids)] == [
        r[:queue_at] + r[queue_at + 1 :] for r in stored_rows(logged_ids)
    ]
    # and what the claim returned is what a read of the rows gives
    assert [same(t) for t in fast] == [same(broker.get(i)) for i in fast_ids]  # type: ignore[arg-type]


def _no_own(task: StoredTask) -> StoredTask:
    return replace(task, id="", attempt_token="")


def test_a_settle_writes_what_djangos_cursor_writes() -> None:
    broker = DatabaseBroker(ALIAS, store_clock=False)
    broker.push(new_tasks("fast") + new_tasks("logged"))
    with broker.transaction():
        fast = broker.claim(["fast"], 100, "w1", LEASE, T0)
        logged = broker.claim(["logged"], 100, "w1", LEASE, T0)

    def endings(tasks: list[StoredTask]) -> list[Settlement]:
        ends = []
        for n, t in enumerate(tasks):
            common = {"id": t.id, "worker_id": "w1", "attempt_token": t.attempt_token}
            if n % 3 == 0:
                ends.append(Settlement(**common, status="SUCCESSFUL", finished_at=at(5),
                                       return_value={"n": n, "s": "é"}))  # fmt: skip
            elif n % 3 == 1:
                error = ErrorRecord(exception_class_path="x.E", traceback=f"tb {n}")
                ends.append(Settlement(**common, status="FAILED", finished_at=at(5), error=error))
            else:
                error = ErrorRecord(exception_class_path="x.R", traceback="again")
                ends.append(Settlement(**common, status=READY, finished_at=at(5), error=error,
                                       retry_at=at(30)))  # fmt: skip
        return ends

    with broker.transaction():
        assert broker.settle(endings(fast)) == len(fast)
    with CaptureQueriesContext(connection) as queries, broker.transaction():
        assert broker.settle(endings(logged)) == len(logged)
    assert queries.captured_queries
    queue_at = COLUMNS.index("queue_name") - 1
    assert [r[:queue_at] + r[queue_at + 1 :] for r in stored_rows([t.id for t in fast])] == [
        r[:queue_at] + r[queue_at + 1 :] for r in stored_rows([t.id for t in logged])
    ]


def test_an_execute_wrapper_sees_the_claim_and_the_paused_read() -> None:
    broker = DatabaseBroker(ALIAS, store_clock=False)
    broker.push(new_tasks("default"))
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper), broker.transaction():
        claimed = broker.claim(["default"], 3, "w1", LEASE, T0)
    assert len(claimed) == 3
    assert any(s.startswith(f"UPDATE {TABLE}") for s in seen)
    assert any("tandem_queuepause" in s for s in seen)


def test_a_wrapper_installed_after_the_cursor_was_made_still_sees_its_statements() -> None:
    sqlite_only()
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with dialect_for("sqlite").cursor(connection) as cursor:
        cursor.execute("SELECT %s + 1", [1])
        assert cursor.fetchone() == (2,)
        with connection.execute_wrapper(wrapper):
            cursor.execute("SELECT %s * 10", [4])
            assert cursor.fetchall() == [(40,)]
        cursor.execute("SELECT %s - 1", [4])
        assert cursor.fetchone() == (3,)
    assert seen == ["SELECT %s * 10"]


def test_the_cursor_converts_parameters_and_errors_as_djangos_does() -> None:
    sqlite_only()
    statements: list[tuple[str, Any]] = [
        ("SELECT '%%', %s, '%%s'", ["x"]),  # with parameters: %% -> %
        ("SELECT '%%', '%s'", None),  # without: as written
        ("SELECT %s, %s", (T0.replace(tzinfo=None), 1.5)),
    ]
    for sql, params in statements:
        with connection.cursor() as django_cursor:
            django_cursor.execute(sql, params)
            expected = django_cursor.fetchall()
        with dialect_for("sqlite").cursor(connection) as cursor:
            cursor.execute(sql, params)
            assert cursor.fetchall() == expected, sql
    with dialect_for("sqlite").cursor(connection) as cursor:
        with pytest.raises(DatabaseError):  # Django's exception class, not sqlite3's
            cursor.execute("SELECT * FROM no_such_table WHERE x = %s", [1])
        cursor.executemany(f"UPDATE {TABLE} SET priority = %s WHERE id = %s", [[1, "x"], [2, "y"]])
        assert cursor.rowcount == 0


def test_a_claim_in_the_rounds_write_transaction_takes_no_probe() -> None:
    """The supervisor's round already holds SQLite's write lock: the claim goes straight to its
    UPDATE. Outside it, or for a pool with a rate, the claim probes first, and an empty store
    takes no write lock at all."""
    sqlite_only()
    broker = DatabaseBroker(ALIAS, store_clock=False)
    broker.push(new_tasks("default"))

    with CaptureQueriesContext(connection) as queries, broker.transaction():
        assert len(broker.claim(["default"], 1, "w1", LEASE, T0)) == 1
    assert not any(q["sql"].startswith("SELECT 1 FROM") for q in queries.captured_queries)
    with CaptureQueriesContext(connection) as queries, broker.transaction():
        assert len(broker.claim(["default"], 1, "w1", LEASE, T0, rate_limit="9/s")) == 1
    assert any(q["sql"].startswith("SELECT 1 FROM") for q in queries.captured_queries)
    with CaptureQueriesContext(connection) as queries:
        assert len(broker.claim(["default"], 1, "w1", LEASE, T0)) == 1
    assert any(q["sql"].startswith("SELECT 1 FROM") for q in queries.captured_queries)
    # with nothing to claim: the probe, and no write
    broker.claim(["default"], 100, "w1", LEASE, T0)
    with CaptureQueriesContext(connection) as queries:
        assert broker.claim(["default"], 1, "w1", LEASE, T0) == []
    assert [q["sql"].split(" ")[0] for q in queries.captured_queries] == ["SELECT", "SELECT"]


def test_the_claims_limit_is_written_into_the_statement_on_sqlite() -> None:
    """SQLite prepares a statement whose LIMIT is a parameter again at every run."""
    sqlite_only()
    broker = DatabaseBroker(ALIAS, store_clock=False)
    broker.push(new_tasks("default"))
    seen: list[tuple[str, Any]] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper), broker.transaction():
        assert len(broker.claim(["default"], 2, "w1", LEASE, T0)) == 2
    [(update, params)] = [(sql, p) for sql, p in seen if "ORDER BY" in sql]
    assert update.startswith("UPDATE")
    assert "ORDER BY priority DESC, available_at, enqueued_at LIMIT 2)" in update
    assert update.count("%s") == len(params)


@pytest.mark.parametrize("logged", [False, True])
def test_a_pause_stops_the_next_claim_of_the_round(logged: bool) -> None:
    broker = DatabaseBroker(ALIAS, store_clock=False)
    broker.push(new_tasks("exports") + new_tasks("default"))

    def elsewhere(change: Any) -> None:
        """``change`` on another connection (e.g. ``tandem pause`` in another process)."""

        def run() -> None:
            try:
                change(DatabaseBroker(ALIAS, store_clock=False))
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()

    def claim(queues: list[str], limit: int = 1) -> list[StoredTask]:
        if logged:
            with CaptureQueriesContext(connection), broker.transaction():
                return broker.claim(queues, limit, "w1", LEASE, T0)
        with broker.transaction():
            return broker.claim(queues, limit, "w1", LEASE, T0)

    assert [t.queue_name for t in claim(["exports"])] == ["exports"]
    elsewhere(lambda other: other.pause_queues(["exports"], T0))
    assert {t.queue_name for t in claim(["exports", "default"], 100)} == {"default"}
    assert claim(["exports"]) == []
    assert not broker.has_ready(["exports"], T0)
    elsewhere(lambda other: other.resume_queues(["exports"]))
    assert [t.queue_name for t in claim(["exports"])] == ["exports"]


def test_the_sqlite_datetime_parameter_is_djangos() -> None:
    sqlite_only()
    plus_two = timezone(timedelta(hours=2))
    values = [
        None,
        T0,
        datetime.now(UTC),
        connection.timezone and datetime(2030, 1, 1, tzinfo=connection.timezone),
        T0.astimezone(plus_two),
        T0.replace(tzinfo=None),
        datetime(2030, 1, 1, 0, 0, 0, 0, tzinfo=UTC),
    ]
    dialect = dialect_for("sqlite")
    for value in values:
        assert dialect.datetime_param(connection, value) == (
            connection.ops.adapt_datetimefield_value(value)
        ), value


def reference_row_to_task(row: Any) -> StoredTask:
    """``row_to_task`` as it was written before it converted by position (the reference)."""
    values: dict[str, Any] = {}
    for name, raw in zip(COLUMNS, row, strict=True):
        value = raw
        if name in ARGUMENT_COLUMNS and isinstance(value, str | bytes):
            value = load(value)
        elif name in JSON_COLUMNS and isinstance(value, str | bytes):
            value = json.loads(value)
        elif name in DATETIME_COLUMNS and value is not None:
            if isinstance(value, str):
                value = parse_datetime(value)
            if value is not None and value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
        values[name] = value
    values["id"] = str(uuid.UUID(str(values["id"])))
    values["takes_context"] = bool(values["takes_context"])
    values["errors"] = tuple(ErrorRecord(**e) for e in values["errors"] or ())
    values["worker_ids"] = tuple(values["worker_ids"] or ())
    values["args"] = values["args"] if values["args"] is not None else []
    values["kwargs"] = values["kwargs"] if values["kwargs"] is not None else {}
    return StoredTask(**values)


@pytest.mark.django_db(transaction=False)
def test_row_to_task_converts_as_the_reference_does() -> None:
    naive = datetime(2030, 1, 1, 12, 0, 0, 123456)
    ident = uuid.uuid4()
    base: dict[str, Any] = {name: None for name in COLUMNS}
    base.update(
        id=ident.hex,
        backend=ALIAS,
        queue_name="q",
        task_path="p",
        priority=0,
        takes_context=0,
        status="READY",
        args="[]",
        kwargs="{}",
        available_at=naive,
        enqueued_at=naive,
        errors="[]",
        worker_ids="[]",
        max_attempts=1,
        worker_id="",
        attempt_token="",
        concurrency_limit=1,
        on_limit="wait",
    )
    error = json.dumps([{"exception_class_path": "a.B", "traceback": "t"}])
    variants: list[dict[str, Any]] = [
        {},
        {"id": ident.hex.upper()},
        {"id": ident},
        {"id": str(ident)},
        {"id": "{" + str(ident) + "}"},
        {"takes_context": 1, "args": '[1, "x"]', "kwargs": '{"a": [1]}'},
        {"args": b"[]", "kwargs": b"{}", "errors": b"[]", "worker_ids": b'["w"]'},
        {"args": "not json", "kwargs": "{", "return_value": "[]", "progress": '{"p": 1}'},
        {"args": None, "kwargs": None, "errors": None, "worker_ids": None},
        {"args": [1], "kwargs": {"k": 1}, "errors": [], "worker_ids": ["w"]},
        {"errors": error, "worker_ids": '["w1", "w2"]', "return_value": "null"},
        {"available_at": "2030-01-01 12:00:00.5", "started_at": "2030-01-01T12:00:00+02:00"},
        {"run_after": "not a time", "lease_expires_at": naive.replace(tzinfo=UTC)},
        {"progress_at": naive.replace(tzinfo=timezone(timedelta(hours=-3)))},
        {"trace_context": '{"traceparent": "x"}', "timeout": 1.5, "rate_limit": "3/s"},
    ]
    for variant in variants:
        row = tuple({**base, **variant}[name] for name in COLUMNS)
        converted, expected = row_to_task(row), reference_row_to_task(row)
        assert converted == expected, variant
        for f in fields(converted):  # the same types too (1 == True, [] == () aside)
            assert type(getattr(converted, f.name)) is type(getattr(expected, f.name)), f.name
    with pytest.raises(ValueError):
        row_to_task(tuple(base.values())[:-1])
    with pytest.raises(ValueError):
        row_to_task((*base.values(), None))


@pytest.mark.django_db(transaction=False)
def test_a_claim_in_the_callers_transaction_rolls_back_with_it() -> None:
    broker = DatabaseBroker(ALIAS, store_clock=False)
    broker.push(new_tasks("default"))
    with pytest.raises(RuntimeError), transaction.atomic():
        assert broker.claim(["default"], 100, "w1", LEASE, T0)
        raise RuntimeError("the caller failed")
    assert {broker.get(t).status for t in _ids()} == {READY}  # type: ignore[union-attr]


def _ids() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {TABLE}")
        return [str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()]

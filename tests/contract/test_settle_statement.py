"""A batch of endings of every kind, written as PostgreSQL writes it: ONE ``UPDATE`` over column
arrays (``PostgreSQLDialect.settle_rows``), each row still guarded by its attempt. The kinds'
columns must not leak into each other's rows, and the statement must find its rows by their
primary key whatever the planner's statistics say about RUNNING rows."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tandem.brokers.base import FAILED, READY, RUNNING, SUCCESSFUL, ErrorRecord, Settlement
from tandem.brokers.database import TABLE, DatabaseBroker
from tandem.models import TaskRecord
from tests.contract.conftest import ALIAS, T0, at, succeed, token

pytestmark = pytest.mark.django_db

BOOM = ErrorRecord(exception_class_path="builtins.ValueError", traceback='ValueError: "b\\o}m"\n')
LEASE = at(60)


def claim(broker, push, count: int, **fields) -> list[str]:
    ids = [push(enqueued_at=at(-10), **fields).id for _ in range(count)]
    claimed = broker.claim(["default"], count, "w1", LEASE, T0)
    assert sorted(t.id for t in claimed) == sorted(ids)
    return ids


def failed(task_id: str, status: str = FAILED, retry_at=None, attempt: str = "") -> Settlement:
    return Settlement(
        id=task_id,
        attempt_token=attempt or token(task_id),
        worker_id="w1",
        status=status,
        finished_at=at(5),
        error=BOOM,
        retry_at=retry_at,
    )


def test_each_kind_of_ending_writes_its_own_columns_in_one_batch(broker, push):
    """A finish frees the unique key and writes ``finished_at``; a success writes its return
    value, a failure appends its error and keeps the return value; a retry appends its error,
    moves ``available_at`` and keeps its key and ``finished_at``; a stale ending writes nothing."""
    keyed = [push(enqueued_at=at(-10), unique_key=f"k{n}").id for n in range(4)]
    [ok, bad, again, stale] = keyed
    assert len(broker.claim(["default"], 4, "w1", LEASE, T0)) == 4
    stale_token = token(stale)
    broker.release("w1", {stale: stale_token}, at(1))  # its attempt ended: the ending is stale
    value = {"quote": 'a"b', "slash": "c\\d", "list": [1, None, "}"]}

    written = broker.settle(
        [
            succeed(ok, "w1", at(5), value),
            failed(bad),
            failed(again, READY, retry_at=at(9)),
            Settlement(
                id=stale,
                attempt_token=stale_token,
                worker_id="w1",
                status=SUCCESSFUL,
                finished_at=at(5),
                return_value="late",
            ),
        ]
    )

    assert written == 3
    done, lost, retried, untouched = (broker.get(i) for i in (ok, bad, again, stale))
    assert (done.status, done.return_value, done.finished_at, done.errors) == (
        SUCCESSFUL,
        value,
        at(5),
        (),
    )
    assert (lost.status, lost.return_value, lost.finished_at) == (FAILED, None, at(5))
    assert [e.traceback for e in lost.errors] == [BOOM.traceback]
    assert (retried.status, retried.available_at, retried.finished_at) == (READY, at(9), None)
    assert [e.traceback for e in retried.errors] == [BOOM.traceback]
    assert (untouched.status, untouched.return_value) == (READY, None)
    for task_id in (ok, bad, again):
        stored = broker.get(task_id)
        assert (stored.worker_id, stored.lease_expires_at) == ("", None)
    if isinstance(broker, DatabaseBroker):
        keys = dict(TaskRecord.objects.filter(id__in=keyed).values_list("id", "unique_key"))
        assert {str(i): k for i, k in keys.items()} == {
            ok: None,
            bad: None,
            again: "k2",  # a retry is still the same task: it keeps its key
            stale: "k3",
        }


def test_a_second_error_is_appended_to_the_first(broker, push):
    [task_id] = claim(broker, push, 1, max_attempts=2)
    assert broker.settle([failed(task_id, READY, retry_at=at(1))]) == 1
    [again] = broker.claim(["default"], 1, "w1", LEASE, at(2))
    assert again.id == task_id

    assert broker.settle([failed(task_id)]) == 1

    assert len(broker.get(task_id).errors) == 2


@pytest.mark.postgres
def test_a_postgresql_batch_is_one_statement():
    broker = DatabaseBroker(ALIAS, store_clock=False)
    ids = [str(uuid.uuid4()) for _ in range(20)]
    TaskRecord.objects.bulk_create(
        [
            TaskRecord(
                id=uuid.UUID(i),
                backend=ALIAS,
                task_path="tests.tasks.noop",
                status=RUNNING,
                worker_id="w1",
                attempt_token="t",
                available_at=T0,
                enqueued_at=T0,
            )
            for i in ids
        ]
    )
    many: list[bool] = []

    def spy(execute, sql, params, many_, context):
        many.append(many_)
        return execute(sql, params, many_, context)

    settlements = [
        Settlement(id=i, attempt_token="t", worker_id="w1", status=SUCCESSFUL, finished_at=at(1))
        for i in ids[:10]
    ] + [failed(i, attempt="t") for i in ids[10:]]
    with (
        connection.execute_wrapper(spy),
        CaptureQueriesContext(connection) as queries,
    ):
        assert broker.settle(settlements) == 20

    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1, updates
    assert not any(many)


@pytest.mark.postgres
def test_a_postgresql_settle_finds_its_rows_by_their_key_whatever_runs():
    """Statistics from before many tasks started (few RUNNING rows) must not make the settle
    read every RUNNING row: it looks its rows up by id."""
    broker = DatabaseBroker(ALIAS, store_clock=False)
    rows = [
        TaskRecord(
            id=uuid.uuid4(),
            backend=ALIAS,
            task_path="tests.tasks.noop",
            status=READY,
            available_at=T0,
            enqueued_at=T0,
        )
        for _ in range(5000)
    ]
    TaskRecord.objects.bulk_create(rows, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")  # no RUNNING row as far as the planner knows
    claimed = broker.claim(["default"], 4000, "w1", LEASE, T0)
    mine = claimed[:30]
    with CaptureQueriesContext(connection) as queries:
        broker.settle([succeed(t.id, "w1", at(5)) for t in mine])
    [statement] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    TaskRecord.objects.filter(id__in=[t.id for t in mine]).update(status=RUNNING)

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statement}")
        plan = "\n".join(row[0] for row in cursor.fetchall())

    print(plan)
    assert "tandem_taskrecord_pkey" in plan, plan
    assert "tandem_claim_idx" not in plan and "tandem_lease_idx" not in plan, plan

"""The claim statement is served by tandem_claim_idx, not by a scan of the whole table.

The plans explained here are those of the statement ``DatabaseBroker.claim`` really sends
(captured from a claim), whose pick is ``status = 'READY' AND backend = … AND queue_name IN (…)
AND available_at <= … ORDER BY priority DESC, available_at, enqueued_at LIMIT n``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tandem.brokers.database import TABLE, DatabaseBroker
from tandem.models import TaskRecord
from tests.contract.conftest import ALIAS, T0, at

QUEUES = ["default", "critical"]


def fill(total: int, ready: int) -> None:
    """``total`` rows over three queues and two backends, only about ``ready`` of them READY."""
    others = ["SUCCESSFUL"] * 8 + ["FAILED", "RUNNING"]
    rows = []
    for n in range(total):
        when = T0 - timedelta(seconds=total - n)
        rows.append(
            TaskRecord(
                id=uuid.uuid4(),
                backend="other" if n % 7 == 0 else ALIAS,
                queue_name=("default", "critical", "exports")[n % 3],
                task_path="tests.tasks.noop",
                priority=n % 11 - 5,
                status="READY" if n % (total // ready) == 1 else others[n % len(others)],
                available_at=when,
                enqueued_at=when,
            )
        )
    TaskRecord.objects.bulk_create(rows, batch_size=2000)


def claim_statement() -> str:
    """The claim's SQL with its parameters inlined, captured from a real claim."""
    with CaptureQueriesContext(connection) as queries:
        claimed = DatabaseBroker(ALIAS).claim(QUEUES, 10, "w1", at(60), T0)
    assert len(claimed) == 10
    [statement] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert "ORDER BY priority DESC, available_at, enqueued_at" in statement
    return statement


@pytest.mark.django_db
def test_claim_uses_the_claim_index_on_sqlite():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's plan; PostgreSQL's is checked by the postgres-marked test")
    fill(total=2000, ready=100)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    statement = claim_statement()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {statement}")
        plan = [row[-1] for row in cursor.fetchall()]

    print("\n".join(plan))
    assert any(
        line.startswith(f"SEARCH {TABLE} USING INDEX tandem_claim_idx (status=? AND backend=?")
        for line in plan
    ), plan
    assert not any(line.startswith("SCAN") for line in plan), plan


@pytest.mark.postgres
@pytest.mark.django_db
def test_claim_uses_the_claim_index_on_postgresql():
    # Enough rows that a sequential scan would be the planner's choice without a usable index
    # (no enable_seqscan tricks: the planner must prefer the index on its own).
    fill(total=20_000, ready=400)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")
    statement = claim_statement()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statement}")
        plan = [row[0] for row in cursor.fetchall()]

    print("\n".join(plan))
    assert any("Index Scan on tandem_claim_idx" in line for line in plan) or any(
        "Index Scan using tandem_claim_idx" in line for line in plan
    ), plan
    # The rate-limit hint reads tandem_ratewindow (one row per rate-limited task path or pool)
    # once per claim, as a hashed subplan: a scan of that small table is expected.
    assert not any("Seq Scan" in line and "tandem_ratewindow" not in line for line in plan), plan


@pytest.mark.django_db
def test_claim_of_one_queue_stops_at_its_limit_when_many_rows_share_a_due_time():
    """A bulk enqueue stores many rows with the same ``available_at``: the index holds
    ``enqueued_at`` too, so the claim reads them in order and stops at LIMIT instead of sorting
    every READY row (SQLite: no temporary B-tree; PostgreSQL: no Sort or Incremental Sort node)."""
    if connection.vendor == "mysql":
        pytest.skip("MariaDB claims one queue per branch (its own statement)")
    when = T0 - timedelta(seconds=5)
    TaskRecord.objects.bulk_create(
        [
            TaskRecord(
                id=uuid.uuid4(),
                backend=ALIAS,
                queue_name="default",
                task_path="tests.tasks.noop",
                status="READY",
                available_at=when,
                enqueued_at=when + timedelta(microseconds=n),
            )
            for n in range(3000)
        ],
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}" if connection.vendor == "postgresql" else "ANALYZE")
    with CaptureQueriesContext(connection) as queries:
        claimed = DatabaseBroker(ALIAS).claim(["default"], 10, "w1", at(60), T0)
    assert [t.enqueued_at for t in claimed] == [when + timedelta(microseconds=n) for n in range(10)]
    [statement] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}")
            plan = [row[-1] for row in cursor.fetchall()]
            assert not any("TEMP B-TREE" in line for line in plan), plan
        else:
            cursor.execute(f"EXPLAIN {statement}")
            plan = [row[0] for row in cursor.fetchall()]
            assert not any("Sort" in line for line in plan), plan

"""The starvation claim is served by the claim index (tandem_claim_idx): a range on its status,
backend and queue columns with the age checked inside the index, never a scan of the table —
and the usual claim keeps its own index-ordered plan (tests/contract/test_claim_plan.py, run
with the starvation claim's statements in place). The plans are those of the statement
``DatabaseBroker.claim_starved`` really sends, captured from a claim."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tandem.brokers.database import DatabaseBroker
from tests.contract.conftest import ALIAS, T0, at
from tests.contract.test_claim_plan import fill

pytestmark = pytest.mark.django_db


def starved_statement(queues: list[str]) -> str:
    with CaptureQueriesContext(connection) as queries:
        claimed = DatabaseBroker(ALIAS).claim_starved(
            queues, 10, "w1", at(60), T0, T0 - timedelta(seconds=300)
        )
    assert len(claimed) == 10
    assert claimed == sorted(claimed, key=lambda t: (t.available_at, t.enqueued_at))
    [statement] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert "ORDER BY available_at, enqueued_at" in statement
    return statement


def sqlite_plan(statement: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute(f"EXPLAIN QUERY PLAN {statement}")
        return [row[-1] for row in cursor.fetchall()]


@pytest.mark.parametrize("queues", [["default"], ["default", "critical"]])
def test_the_starvation_claim_uses_its_index_on_sqlite(queues):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's plan; PostgreSQL's is checked by the postgres-marked test")
    fill(total=2000, ready=100)

    plan = sqlite_plan(starved_statement(queues))

    print("\n".join(plan))
    assert any(
        line.startswith(
            "SEARCH tandem_taskrecord USING INDEX tandem_claim_idx (status=? AND "
            "backend=? AND queue_name=?"
        )
        for line in plan
    ), plan
    assert not any(line.startswith("SCAN") for line in plan), plan


@pytest.mark.postgres
def test_the_starvation_claim_uses_its_index_on_postgresql():
    fill(total=20_000, ready=400)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tandem_taskrecord")
    statement = starved_statement(["default"])
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statement}")
        plan = [row[0] for row in cursor.fetchall()]

    print("\n".join(plan))
    assert any("Index Scan" in line and "tandem_claim_idx" in line for line in plan), plan
    assert not any("Seq Scan" in line for line in plan), plan

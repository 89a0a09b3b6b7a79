"""A parent's ending finds its waiting children through an index, never by a scan.

The statement explained is the one ``DatabaseBroker.settle`` really sends when a parent ends
(captured from a settle), among many unrelated waiting tasks' edges.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tandem.brokers.database import DatabaseBroker
from tandem.brokers.workflow import Dependency
from tandem.models import TaskDependency, TaskRecord
from tests.contract.conftest import ALIAS, at, succeed

EDGES = TaskDependency._meta.db_table


def edge_lookup(make_task) -> str:  # type: ignore[no-untyped-def]
    """Store many unrelated edges and one real parent -> child; settle the parent; return the
    edge lookup statement the settle sent (parameters inlined)."""
    TaskRecord.objects.bulk_create(
        [
            TaskRecord(
                task_path="tests.tasks.noop",
                status="SUCCESSFUL",
                available_at=at(-10),
                enqueued_at=at(-10),
            )
            for _ in range(5000)
        ],
        batch_size=1000,
    )
    TaskDependency.objects.bulk_create(
        [
            TaskDependency(child_id=uuid.uuid4(), parent_id=uuid.uuid4(), position=0)
            for _ in range(20_000)
        ],
        batch_size=2000,
    )
    broker = DatabaseBroker(ALIAS, store_clock=False)
    parent, child = make_task(), make_task()
    broker.push_workflow([parent, child], [Dependency(task_id=child.id, parent_ids=(parent.id,))])
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {EDGES}")
            cursor.execute(f"ANALYZE {TaskRecord._meta.db_table}")
        else:
            cursor.execute("ANALYZE")
    [claimed] = broker.claim(["default"], 5, "w1", at(60), at(0))
    assert claimed.id == parent.id
    with CaptureQueriesContext(connection) as queries:
        broker.settle([succeed(parent.id, "w1", at(1), attempt=claimed.attempt_token)])
    [claimed] = broker.claim(["default"], 5, "w1", at(62), at(2))
    assert claimed.id == child.id
    # On PostgreSQL the lookup is the second statement of the settle's message.
    [statement] = [
        sql
        for q in queries.captured_queries
        for sql in q["sql"].split("; ")
        if sql.startswith(f"SELECT id, child_id, parent_id FROM {EDGES}")
    ]
    return statement


@pytest.mark.django_db
def test_a_parents_edges_are_found_by_the_parent_index_on_sqlite(make_task) -> None:  # type: ignore[no-untyped-def]
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's plan; PostgreSQL's is checked by the postgres-marked test")
    statement = edge_lookup(make_task)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {statement}")
        plan = [row[-1] for row in cursor.fetchall()]
    print("\n".join(plan))
    assert any(
        line.startswith(f"SEARCH {EDGES} USING INDEX tandem_dep_parent_idx (parent_id=?")
        for line in plan
    ), plan
    assert not any(line.startswith("SCAN") for line in plan), plan


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_parents_edges_are_found_by_the_parent_index_on_postgresql(make_task) -> None:  # type: ignore[no-untyped-def]
    statement = edge_lookup(make_task)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statement}")
        plan = [row[0] for row in cursor.fetchall()]
    print("\n".join(plan))
    assert any("tandem_dep_parent_idx" in line for line in plan), plan
    assert not any("Seq Scan" in line for line in plan), plan

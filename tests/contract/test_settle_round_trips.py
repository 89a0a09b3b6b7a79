"""PostgreSQL: a settle sends its ``UPDATE`` and the workflow probe (the finished tasks'
unresolved edges) in ONE message, and the probe stays a statement of its own: it must see the
edge of a child pushed while the ``UPDATE`` waited for the parent's row lock."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from tandem.brokers.base import READY
from tandem.brokers.database import DatabaseBroker
from tandem.brokers.workflow import WAITING_UNTIL, Dependency
from tandem.models import TaskDependency, TaskRecord
from tests.contract.conftest import ALIAS, at, succeed

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EDGES = TaskDependency._meta.db_table


def claim_parent(broker: DatabaseBroker, make_task):  # type: ignore[no-untyped-def]
    parent = make_task()
    broker.push([parent])
    [claimed] = broker.claim(["default"], 1, "w1", at(60), at(0))
    assert claimed.id == parent.id
    return claimed


def test_the_update_and_the_workflow_probe_are_one_message(make_task) -> None:  # type: ignore[no-untyped-def]
    broker = DatabaseBroker(ALIAS, store_clock=False)
    parent = claim_parent(broker, make_task)

    with CaptureQueriesContext(connection) as queries:
        assert broker.settle([succeed(parent.id, "w1", at(1), attempt=parent.attempt_token)]) == 1

    sent = [q["sql"] for q in queries.captured_queries]
    [message] = [sql for sql in sent if "UPDATE" in sql]
    assert f"; SELECT id, child_id, parent_id FROM {EDGES}" in message
    assert not [sql for sql in sent if sql.startswith("SELECT")], sent


def test_the_probe_sees_a_child_pushed_while_the_settle_waited(make_task) -> None:  # type: ignore[no-untyped-def]
    broker = DatabaseBroker(ALIAS, store_clock=False)
    parent = claim_parent(broker, make_task)
    child = make_task()
    pushed, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def push_child() -> None:  # holds the parent's row (FOR SHARE) until released
        try:
            with transaction.atomic():
                broker.push_workflow(
                    [child], [Dependency(task_id=child.id, parent_ids=(parent.id,))]
                )
                pushed.set()
                release.wait(10)
        except BaseException as exc:
            errors.append(exc)
        finally:
            pushed.set()
            connections.close_all()

    def settle() -> None:
        try:
            ending = succeed(parent.id, "w1", at(1), attempt=parent.attempt_token)
            assert broker.settle([ending]) == 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    pusher = threading.Thread(target=push_child)
    pusher.start()
    assert pushed.wait(10)
    settler = threading.Thread(target=settle)
    settler.start()
    try:
        deadline = time.monotonic() + 10
        while not waiting_on_a_lock():  # the settle's UPDATE waits for the parent's row
            assert time.monotonic() < deadline, "the settle never waited for the parent's row"
            time.sleep(0.01)
    finally:
        release.set()
        pusher.join(10)
        settler.join(10)
    assert not errors, errors

    stored = broker.get(child.id)
    assert stored is not None
    assert stored.status == READY
    assert stored.available_at < WAITING_UNTIL  # the child is claimable: its parent finished
    [claimed] = broker.claim(["default"], 5, "w1", at(62), at(2))
    assert claimed.id == child.id


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE %s",
            [f"%UPDATE {TaskRecord._meta.db_table} AS t%"],
        )
        return bool(cursor.fetchone()[0])

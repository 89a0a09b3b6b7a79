"""Workflows end to end through a real supervisor: ``enqueue_after``, ``chain``, ``group``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.tasks.exceptions import TaskResultDoesNotExist

import tandem
from tandem.brokers.base import FAILED, READY, SUCCESSFUL, Settlement
from tandem.models import TaskRecord
from tests import tasks
from tests.features import tasks as features
from tests.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_after_waits_and_sees_its_parents_results(drain: Any) -> None:
    first, second = tasks.add.enqueue(1, 2), tasks.add.enqueue(3, 4)
    child = tandem.enqueue_after([first, second.id], features.parents_seen, ["after"])
    child.refresh()
    assert child.status == READY
    drain()
    child.refresh()
    assert child.status == SUCCESSFUL
    assert child.return_value == {
        "label": "after",
        "parents": [["SUCCESSFUL", 3], ["SUCCESSFUL", 7]],
    }


def test_a_failed_parent_fails_the_child_unless_it_runs_anyway(drain: Any) -> None:
    parent = tasks.fail.enqueue("no")
    failing = tandem.enqueue_after([parent], tasks.ledger, ["never"])
    anyway = tandem.enqueue_after(
        [parent], features.parents_seen, ["anyway"], on_parent_failure="run"
    )
    drain()
    failing.refresh()
    anyway.refresh()
    assert failing.status == FAILED
    assert failing.errors[-1].exception_class_path == "tandem.exceptions.DependencyFailed"
    assert not Ledger.objects.filter(key="never").exists()
    assert anyway.status == SUCCESSFUL
    assert anyway.return_value["parents"] == [["FAILED", None]]


def test_cancelling_a_ready_parent_fails_its_dependents(drain: Any) -> None:
    parent = tasks.noop.enqueue()
    child = tandem.enqueue_after([parent], tasks.ledger, ["cancelled-parent"])
    assert tandem.cancel(parent.id)
    child.refresh()
    assert child.status == FAILED
    drain()
    assert not Ledger.objects.filter(key="cancelled-parent").exists()


def test_a_retried_parent_keeps_its_child_waiting_until_it_succeeds(drain: Any) -> None:
    parent = tasks.hooked_flaky.enqueue("retried-parent", 1)  # fails once, then succeeds
    child = tandem.enqueue_after([parent], features.parents_seen, ["after-retry"])
    drain()
    parent.refresh()
    child.refresh()
    assert (parent.status, parent.attempts) == (SUCCESSFUL, 2)
    assert child.status == SUCCESSFUL
    assert child.return_value["parents"] == [["SUCCESSFUL", parent.return_value]]


def test_a_chain_passes_each_return_value_on(drain: Any) -> None:
    results = tandem.chain(
        [
            (tasks.add, [1, 2], {}),
            (features.add_to, [10], {}),
            (features.add_to, [], {"amount": 100}),
        ]
    )
    drain()
    values = []
    for result in results:
        result.refresh()
        values.append((result.status, result.return_value))
    assert values == [(SUCCESSFUL, 3), (SUCCESSFUL, 13), (SUCCESSFUL, 113)]


def test_a_failed_step_fails_the_rest_of_the_chain(drain: Any) -> None:
    first, second, third = tandem.chain(
        [(tasks.fail, ["step"], None), (features.add_to, [1], None), (features.add_to, [2], None)]
    )
    drain()
    first.refresh()
    assert first.status == FAILED
    for result in (second, third):
        result.refresh()
        assert result.status == FAILED
        assert result.errors[-1].exception_class_path == "tandem.exceptions.DependencyFailed"


def test_a_chain_is_rolled_back_with_the_callers_transaction() -> None:
    class Rollback(Exception):
        pass

    before = TaskRecord.objects.count()
    with pytest.raises(Rollback), transaction.atomic():
        results = tandem.chain([(tasks.noop, [], None), (tasks.echo, [], None)])
        group = tandem.group([(tasks.noop, [], None)], then=features.group_done)
        raise Rollback
    assert TaskRecord.objects.count() == before
    with pytest.raises(TaskResultDoesNotExist):
        tasks.noop.get_result(results[0].id)
    with pytest.raises(LookupError):
        tandem.get_group(group.id)


def test_a_group_runs_its_callback_once_with_the_group_id(drain: Any) -> None:
    group = tandem.group(
        [(tasks.add, [n, n], None) for n in range(5)] + [(tasks.fail, ["one"], None)],
        then=features.group_done,
    )
    assert isinstance(group, tandem.Group) and len(group.results) == 6
    assert not group.finished
    drain()
    fresh = tandem.get_group(group.id)
    assert fresh.finished and not fresh.successful
    assert [r.return_value for r in fresh.results[:5]] == [0, 2, 4, 6, 8]
    assert list(Ledger.objects.filter(key=f"then:{group.id}").values_list("worker", flat=True)) == [
        "6/6"
    ]
    then = fresh.then_result
    assert then is not None and then.status == SUCCESSFUL and then.args == [group.id]


def test_bad_input_is_refused_with_a_clear_message() -> None:
    parent = tasks.noop.enqueue()
    with pytest.raises(ValueError, match="on_parent_failure must be 'fail' or 'run', got 'skip'"):
        tandem.enqueue_after([parent], tasks.noop, on_parent_failure="skip")
    with pytest.raises(ValueError, match="needs at least one parent"):
        tandem.enqueue_after([], tasks.noop)
    with pytest.raises(ValueError, match="parent 0 must be a TaskResult or a task id, got 'x'"):
        tandem.enqueue_after(["x"], tasks.noop)
    with pytest.raises(ValueError, match="does not exist"):
        tandem.enqueue_after(["00000000-0000-4000-8000-000000000001"], tasks.noop)
    with pytest.raises(TypeError, match=r"chain\(\) step 1 must be a \(task, args, kwargs\)"):
        tandem.chain([(tasks.noop, [], None), tasks.noop])
    with pytest.raises(ValueError, match="unique tasks cannot wait"):
        tandem.enqueue_after([parent], tasks.unique_ledger, ["u"])
    with pytest.raises(LookupError, match="no group 'nope'"):
        tandem.get_group("nope")


def test_supervisors_are_woken_after_the_commit_and_when_a_child_is_released() -> None:
    from django.utils import timezone

    from tandem import wakeup

    parent = tasks.noop.enqueue()
    child = tandem.enqueue_after([parent], tasks.critical_noop)
    woken: list[str] = []
    wakeup.subscribe("default", woken.append)
    try:
        with transaction.atomic():
            tandem.chain([(tasks.noop, [], None), (tasks.critical_noop, [], None)])
            assert woken == []  # nothing is visible before the commit
        assert woken == ["default"]  # the chain's first step; its second step waits
        woken.clear()
        broker = tasks.noop.get_backend().broker  # type: ignore[attr-defined]
        now = timezone.now()
        claimed = broker.claim(["default"], 10, "w", now + timedelta(seconds=60), now)
        ending = next(t for t in claimed if t.id == parent.id)
        broker.settle(
            [
                Settlement(
                    id=parent.id,
                    worker_id="w",
                    attempt_token=ending.attempt_token,
                    status=SUCCESSFUL,
                    finished_at=now,
                )
            ]
        )
        assert woken == ["critical"]  # the write that settled the parent released the child
        child.refresh()
        assert child.status == READY
    finally:
        wakeup.unsubscribe("default", woken.append)

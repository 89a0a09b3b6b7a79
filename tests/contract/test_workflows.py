"""The workflow contract (``brokers.workflow``): waiting tasks, their resolution, groups."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tandem.brokers.base import FAILED, READY, SUCCESSFUL, Broker, ErrorRecord, NewTask, Settlement
from tandem.brokers.workflow import Dependency, GroupSpec
from tests.contract.conftest import at, succeed, token

pytestmark = pytest.mark.django_db(transaction=True)
W = "worker-a"
LEASE = at(60)


def fail(task_id: str, when: float, *, retry: bool = False) -> Settlement:
    return Settlement(
        id=task_id,
        attempt_token=token(task_id),
        worker_id=W,
        status=READY if retry else FAILED,
        finished_at=at(when),
        error=ErrorRecord(exception_class_path="builtins.ValueError", traceback="boom\n"),
        retry_at=at(when) if retry else None,
    )


def claim_ids(broker: Broker, when: float = 0, limit: int = 50) -> list[str]:
    return [t.id for t in broker.claim(["default"], limit, W, at(when + 60), at(when))]


def after(child: NewTask, *parents: NewTask | str, policy: str = "fail") -> Dependency:
    return Dependency(
        task_id=child.id,
        parent_ids=tuple(p if isinstance(p, str) else p.id for p in parents),
        on_parent_failure=policy,
    )


def test_a_waiting_task_is_claimable_only_once_its_parent_succeeded(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    parent, child = make_task(), make_task()
    assert broker.push_workflow([parent, child], [after(child, parent)]) == [parent.id, child.id]
    stored = broker.get(child.id)
    assert stored is not None and stored.status == READY
    assert claim_ids(broker) == [parent.id]
    assert claim_ids(broker, 1) == []  # the child waits: not claimable, however late
    [stats] = broker.stats()
    assert (stats.ready, stats.running) == (0, 1)  # a waiting task is not counted as READY
    assert broker.settle([succeed(parent.id, W, at(2), 7)]) == 1
    assert claim_ids(broker, 3) == [child.id]  # claimable after the very write that settled


def test_a_task_with_two_parents_waits_for_both(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    a, b, child = make_task(), make_task(), make_task()
    broker.push_workflow([a, b, child], [after(child, a, b)])
    assert sorted(claim_ids(broker)) == sorted([a.id, b.id])
    broker.settle([succeed(a.id, W, at(1))])
    assert claim_ids(broker, 2) == []
    broker.settle([succeed(b.id, W, at(3))])
    assert claim_ids(broker, 4) == [child.id]
    assert broker.parent_ids(child.id) == [a.id, b.id]
    assert broker.child_ids(a.id) == [child.id]


def test_a_failed_parent_fails_its_fail_children_and_theirs_and_runs_its_run_children(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    parent, failing, grandchild, running = make_task(), make_task(), make_task(), make_task()
    broker.push_workflow(
        [parent, failing, grandchild, running],
        [after(failing, parent), after(grandchild, failing), after(running, parent, policy="run")],
    )
    assert claim_ids(broker) == [parent.id]
    broker.settle([fail(parent.id, 1)])
    for task_id in (failing.id, grandchild.id):
        stored = broker.get(task_id)
        assert stored is not None
        assert stored.status == FAILED and stored.attempts == 0  # never ran
        assert stored.finished_at == at(1)
        assert [e.exception_class_path for e in stored.errors] == [
            "tandem.exceptions.DependencyFailed"
        ]
        assert "on_parent_failure" in stored.errors[0].traceback
    assert claim_ids(broker, 2) == [running.id]


def test_a_retried_parent_keeps_its_children_waiting(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    parent, child = make_task(max_attempts=2), make_task()
    broker.push_workflow([parent, child], [after(child, parent)])
    assert claim_ids(broker) == [parent.id]
    broker.settle([fail(parent.id, 1, retry=True)])
    stored = broker.get(child.id)
    assert stored is not None and stored.status == READY
    assert claim_ids(broker, 2) == [parent.id]  # the retry; the child still waits
    broker.settle([succeed(parent.id, W, at(3))])
    assert claim_ids(broker, 4) == [child.id]


def test_cancelling_a_ready_parent_fails_its_children(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    parent, child = make_task(), make_task()
    broker.push_workflow([parent, child], [after(child, parent)])
    assert broker.cancel(parent.id, at(1)) == "cancelled"
    stored = broker.get(child.id)
    assert stored is not None and stored.status == FAILED
    assert stored.errors[-1].exception_class_path == "tandem.exceptions.DependencyFailed"


def test_a_parent_given_up_by_recovery_fails_its_children(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    parent, child = make_task(), make_task()
    broker.push_workflow([parent, child], [after(child, parent)])
    assert claim_ids(broker) == [parent.id]
    recovered = broker.recover_expired(at(120), recovery_max_attempts=1)
    assert [(r.id, r.status) for r in recovered] == [(parent.id, FAILED)]
    stored = broker.get(child.id)
    assert stored is not None and stored.status == FAILED


def test_parents_finished_before_the_push_count_at_once(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    done, failed = make_task(), make_task()
    broker.push([done, failed])
    assert sorted(claim_ids(broker)) == sorted([done.id, failed.id])
    broker.settle([succeed(done.id, W, at(1)), fail(failed.id, 1)])
    runs, fails, runs_anyway = make_task(), make_task(), make_task()
    broker.push_workflow(
        [runs, fails, runs_anyway],
        [after(runs, done), after(fails, done, failed), after(runs_anyway, failed, policy="run")],
    )
    stored = broker.get(fails.id)
    assert stored is not None and stored.status == FAILED
    assert sorted(claim_ids(broker, 2)) == sorted([runs.id, runs_anyway.id])


def test_a_chain_step_gets_its_parent_return_value_first(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    first, second = make_task(args=[1]), make_task(args=[10, "x"])
    step = Dependency(task_id=second.id, parent_ids=(first.id,), pass_result=True)
    broker.push_workflow([first, second], [step])
    claim_ids(broker)
    broker.settle([succeed(first.id, W, at(1), {"sum": 3})])
    [claimed] = broker.claim(["default"], 5, W, at(62), at(2))
    assert claimed.id == second.id and claimed.args == [{"sum": 3}, 10, "x"]


def test_a_group_callback_is_claimable_exactly_once_after_every_member_finished(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    items = [make_task(args=[n]) for n in range(4)]
    then = make_task(task_path="tests.tasks.echo")
    spec = GroupSpec(
        id="7b7d6a36-3f5b-4b84-9a4a-5b1a0b3f0c11",
        backend="default",
        created_at=at(-5),
        member_ids=tuple(i.id for i in items),
        then_id=then.id,
    )
    dependency = after(then, *items, policy="run")
    broker.push_workflow([*items, then], [dependency], spec)
    group = broker.get_group(spec.id)
    assert group is not None
    assert (group.member_ids, group.then_id) == (spec.member_ids, then.id)
    assert [g.id for g in broker.recent_groups(5)] == [spec.id]
    assert sorted(claim_ids(broker)) == sorted(i.id for i in items)
    broker.settle([succeed(items[0].id, W, at(1)), fail(items[1].id, 1)])
    assert broker.cancel(items[2].id, at(1)) == "requested"  # RUNNING: only a request
    assert claim_ids(broker, 2) == []
    broker.settle([succeed(items[2].id, W, at(3))])
    assert claim_ids(broker, 4) == []
    broker.settle([succeed(items[3].id, W, at(5))])
    assert claim_ids(broker, 6) == [then.id]  # whatever the members' statuses
    broker.settle([succeed(then.id, W, at(7))])
    assert claim_ids(broker, 8) == []
    stored = broker.get(then.id)
    assert stored is not None and stored.status == SUCCESSFUL and stored.attempts == 1


def test_an_unknown_parent_is_refused_and_nothing_is_stored(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    child = make_task()
    missing = "00000000-0000-4000-8000-000000000001"
    with pytest.raises(ValueError, match=f"parent task {missing} does not exist"):
        broker.push_workflow([child], [after(child, missing)])
    assert broker.get(child.id) is None


def test_unique_tasks_are_refused(broker: Broker, make_task: Callable[..., NewTask]) -> None:
    parent, child = make_task(), make_task(unique_key="k")
    with pytest.raises(ValueError, match="unique tasks cannot be part of a workflow"):
        broker.push_workflow([parent, child], [after(child, parent)])


@pytest.mark.django_db(transaction=True)
def test_items_settled_at_once_by_four_threads_release_the_callback_exactly_once(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    """Four threads settle a group's items in lock-step rounds (each round a four-way race on
    the callback's counter); the callback becomes claimable once, after the last round."""
    import threading

    from django.db import connection

    items = [make_task(args=[n]) for n in range(40)]
    then = make_task(task_path="tests.tasks.echo")
    broker.push_workflow([*items, then], [after(then, *items, policy="run")])
    claimed = broker.claim(["default"], 100, W, at(600), at(0))
    assert sorted(t.id for t in claimed) == sorted(i.id for i in items)
    tokens = {t.id: t.attempt_token for t in claimed}
    barrier = threading.Barrier(4, timeout=120)
    errors: list[BaseException] = []

    def settle_share(share: int) -> None:
        try:
            for task in items[share::4]:
                barrier.wait()
                broker.settle([succeed(task.id, W, at(1), attempt=tokens[task.id])])
        except BaseException as exc:  # a failing thread must fail the test, not hang it
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=settle_share, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert claim_ids(broker, 2) == [then.id]
    assert claim_ids(broker, 3) == []


def test_pruning_finished_tasks_forgets_their_edges(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    parent, child, waiting = make_task(), make_task(), make_task()
    broker.push_workflow(
        [parent, child, waiting],
        [after(child, parent), after(waiting, parent, child)],
    )
    claim_ids(broker)
    broker.settle([succeed(parent.id, W, at(1))])
    claim_ids(broker, 2)
    broker.settle([succeed(child.id, W, at(3))])
    assert broker.prune(at(2), [SUCCESSFUL]) == 1  # the parent only
    assert broker.get(parent.id) is None
    assert broker.parent_ids(waiting.id) == [parent.id, child.id]  # kept while it lives
    assert claim_ids(broker, 4) == [waiting.id]  # still resolved as it should be
    broker.settle([succeed(waiting.id, W, at(5))])
    assert broker.prune(at(10), [SUCCESSFUL]) == 2
    assert broker.parent_ids(waiting.id) == []
    assert broker.child_ids(child.id) == []


def test_a_cancelled_waiting_task_stays_cancelled_and_fails_its_own_children(
    broker: Broker, make_task: Callable[..., NewTask]
) -> None:
    parent, waiting, grandchild = make_task(), make_task(), make_task()
    broker.push_workflow(
        [parent, waiting, grandchild], [after(waiting, parent), after(grandchild, waiting)]
    )
    assert broker.cancel(waiting.id, at(1)) == "cancelled"
    stored = broker.get(grandchild.id)
    assert stored is not None and stored.status == FAILED
    assert stored.errors[-1].exception_class_path == "tandem.exceptions.DependencyFailed"
    assert claim_ids(broker, 2) == [parent.id]
    broker.settle([succeed(parent.id, W, at(3))])
    assert claim_ids(broker, 4) == []  # the cancelled task is not brought back
    stored = broker.get(waiting.id)
    assert stored is not None and stored.status == FAILED
    assert [e.exception_class_path for e in stored.errors] == ["tandem.exceptions.Cancelled"]

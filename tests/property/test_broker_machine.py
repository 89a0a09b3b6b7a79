"""The broker contract as a state machine (hypothesis): random runs of push, claim, settle,
renew, release, clock moves, lease recovery, cancel, pause/resume, the starvation claim and the
bulk retry against each store — the memory twin, the
run's database, and Redis (in the SQLite run) — checked against a plain model after every step.

Invariants:

- no task is lost: every pushed id can still be read, with the model's status and attempts;
- never two live leases on one task: a claim takes only READY tasks (never one another worker
  holds), a RUNNING task names exactly the worker the model says holds it, and a worker that
  lost its lease can neither renew nor settle it;
- statuses move only along the contract's edges: READY -> RUNNING (claim) | FAILED (cancel);
  RUNNING -> SUCCESSFUL | FAILED | READY (settle, release, recovery); SUCCESSFUL is final, and
  FAILED too but for an explicit ``retry_failed`` (back to READY);
- a claim returns exactly the claimable tasks the model would pick, in its order — none while the
  queue is paused; a starvation claim, those due before its bound, oldest first;
- workflows: a task pushed to wait for others (``push_workflow``) is never claimable while a
  parent is unfinished; retries of a parent keep it waiting; the write that ends its last
  parent makes it claimable, or FAILED (``on_parent_failure="fail"`` and a parent FAILED), and
  so on down the line.

The clock is the machine's own: every broker call takes ``now``; no wall clock is read. The runs
are derandomized (the same examples on every run, on every machine) and bounded.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tandem.brokers.base import (
    FAILED,
    READY,
    RUNNING,
    SUCCESSFUL,
    Broker,
    ErrorRecord,
    NewTask,
    Settlement,
    allowed_attempts,
)
from tandem.brokers.database import DatabaseBroker
from tandem.brokers.memory import MemoryBroker
from tandem.brokers.redis import RedisBroker
from tandem.brokers.workflow import Dependency
from tandem.models import (
    QueuePause,
    TaskDependency,
    TaskGroup,
    TaskGroupMember,
    TaskRecord,
    TaskWait,
)
from tests.support import redis_store

pytestmark = pytest.mark.django_db

ALIAS = "default"
QUEUE = "default"
T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
LEASE = timedelta(seconds=60)
WORKERS = ("w1", "w2", "w3")
MAX_TASKS = 10
BOOM = ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError: boom\n")
#: Every status change a task may make (a status may also stay as it is).
ALLOWED = {
    (READY, RUNNING),
    (READY, FAILED),
    (RUNNING, SUCCESSFUL),
    (RUNNING, FAILED),
    (RUNNING, READY),
}
BOUNDED = settings(
    max_examples=50,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(slots=True)
class Expected:
    """What the model says one task is."""

    status: str
    priority: int
    available_at: datetime
    enqueued_at: datetime
    max_attempts: int
    attempts: int = 0
    holder: str = ""
    lease: datetime | None = None
    cancel_requested: bool = False
    # Workflows: the parents it still waits for, how many FAILED, and its policy.
    waiting_for: set[str] | None = None
    failed_parents: int = 0
    on_parent_failure: str = "fail"

    @property
    def waiting(self) -> bool:
        return self.waiting_for is not None

    @property
    def order(self) -> tuple[int, datetime, datetime]:
        return (-self.priority, self.available_at, self.enqueued_at)

    def let_go(self, status: str) -> None:
        self.status, self.holder, self.lease, self.cancel_requested = status, "", None, False


class BrokerMachine(RuleBasedStateMachine):
    """Drives ``make_broker()`` (a fresh, empty store per example) against the model."""

    make_broker: Callable[[], Broker]

    def __init__(self) -> None:
        super().__init__()
        self.broker = self.make_broker()
        self.now = T0
        self.model: dict[str, Expected] = {}
        self.seen: dict[str, str] = {}  # id -> the status the store last showed
        self.serial = 0
        self.paused = False

    # -- helpers ---------------------------------------------------------------------------------

    def tick(self) -> datetime:
        """A strictly later moment for each enqueue (ties are broken by enqueued_at)."""
        self.serial += 1
        return self.now + timedelta(microseconds=self.serial)

    def token(self, task_id: str) -> str:
        """The task's current attempt token (what its holder got from the claim)."""
        stored = self.broker.get(task_id)
        return stored.attempt_token if stored is not None else ""

    def finished(self, task_id: str) -> None:
        """The model's side of a task ending SUCCESSFUL or FAILED: resolve its children."""
        ended = self.model[task_id].status
        for child_id, child in self.model.items():
            if child.waiting_for is None or task_id not in child.waiting_for:
                continue
            child.waiting_for.discard(task_id)
            child.failed_parents += ended == FAILED
            if child.waiting_for:
                continue
            child.waiting_for = None
            if child.failed_parents and child.on_parent_failure == "fail":
                child.let_go(FAILED)
                self.finished(child_id)
            else:
                child.available_at = self.now

    def ids(self, status: str | None = None, holder: str | None = None) -> list[str]:
        return sorted(
            task_id
            for task_id, task in self.model.items()
            if (status is None or task.status == status)
            and (holder is None or task.holder == holder)
        )

    # -- rules -----------------------------------------------------------------------------------

    @precondition(lambda self: len(self.model) < MAX_TASKS)
    @rule(
        priority=st.integers(-2, 2),
        delay=st.sampled_from([0, 0, 0, 30, 90]),
        max_attempts=st.integers(1, 3),
        count=st.integers(1, 2),
    )
    def push(self, priority: int, delay: int, max_attempts: int, count: int) -> None:
        new = []
        for _ in range(count):
            enqueued_at = self.tick()
            run_after = self.now + timedelta(seconds=delay) if delay else None
            task = NewTask(
                # Ids from a counter: a replayed example must draw from the same list.
                id=str(uuid.UUID(int=(0x7A5D << 64) + self.serial)),
                backend=ALIAS,
                queue_name=QUEUE,
                task_path="tests.tasks.add",
                priority=priority,
                takes_context=False,
                args=[1, 2],
                kwargs={},
                run_after=run_after,
                enqueued_at=enqueued_at,
                max_attempts=max_attempts,
            )
            new.append(task)
        assert self.broker.push(new) == [t.id for t in new]
        for t in new:
            self.model[t.id] = Expected(
                status=READY,
                priority=t.priority,
                available_at=t.available_at,
                enqueued_at=t.enqueued_at,
                max_attempts=t.max_attempts,
            )

    @precondition(lambda self: 0 < len(self.model) < MAX_TASKS)
    @rule(data=st.data(), policy=st.sampled_from(["fail", "run"]), parents=st.integers(1, 2))
    def push_after(self, data: st.DataObject, policy: str, parents: int) -> None:
        chosen = data.draw(
            st.lists(st.sampled_from(self.ids()), min_size=1, max_size=parents, unique=True),
            label="parents",
        )
        enqueued_at = self.tick()
        task = NewTask(
            id=str(uuid.UUID(int=(0x7A5E << 64) + self.serial)),
            backend=ALIAS,
            queue_name=QUEUE,
            task_path="tests.tasks.add",
            priority=0,
            takes_context=False,
            args=[1, 2],
            kwargs={},
            run_after=None,
            enqueued_at=enqueued_at,
        )
        dependency = Dependency(task_id=task.id, parent_ids=tuple(chosen), on_parent_failure=policy)
        assert self.broker.push_workflow([task], [dependency]) == [task.id]
        unfinished = {p for p in chosen if self.model[p].status in (READY, RUNNING)}
        failed = sum(self.model[p].status == FAILED for p in chosen)
        expected = Expected(
            status=READY,
            priority=0,
            available_at=enqueued_at,
            enqueued_at=enqueued_at,
            max_attempts=1,
            waiting_for=unfinished or None,
            failed_parents=failed,
            on_parent_failure=policy,
        )
        self.model[task.id] = expected
        if not unfinished and failed and policy == "fail":
            expected.let_go(FAILED)
            self.finished(task.id)

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> None:
        claimable = sorted(
            (
                i
                for i in self.ids(READY)
                if self.model[i].available_at <= self.now and not self.model[i].waiting
            ),
            key=lambda i: self.model[i].order,
        )
        if self.paused:
            claimable = []
        claimed = self.broker.claim([QUEUE], limit, worker, self.now + LEASE, self.now)
        assert [t.id for t in claimed] == claimable[:limit]
        self.took(claimed, worker)

    @rule(
        worker=st.sampled_from(WORKERS),
        limit=st.integers(1, 3),
        age=st.sampled_from([0, 30, 90]),
    )
    def claim_starved(self, worker: str, limit: int, age: int) -> None:
        bound = self.now - timedelta(seconds=age)
        starved = sorted(
            (
                i
                for i in self.ids(READY)
                if self.model[i].available_at <= bound and not self.model[i].waiting
            ),
            key=lambda i: (self.model[i].available_at, self.model[i].enqueued_at),
        )
        if self.paused:
            starved = []
        claimed = self.broker.claim_starved(
            [QUEUE], limit, worker, self.now + LEASE, self.now, bound
        )
        assert [t.id for t in claimed] == starved[:limit]
        self.took(claimed, worker)

    def took(self, claimed: list[Any], worker: str) -> None:
        for stored in claimed:
            expected = self.model[stored.id]
            assert expected.status == READY and not expected.holder  # nobody else holds it
            expected.status, expected.holder = RUNNING, worker
            expected.lease = self.now + LEASE
            expected.attempts += 1
            assert (stored.status, stored.worker_id) == (RUNNING, worker)
            assert stored.attempts == expected.attempts

    @precondition(lambda self: bool(self.ids(RUNNING)))
    @rule(
        data=st.data(),
        ending=st.sampled_from([SUCCESSFUL, FAILED, READY]),
        stale=st.booleans(),
        retry_in=st.sampled_from([0, 10, 100]),
    )
    def settle(self, data: st.DataObject, ending: str, stale: bool, retry_in: int) -> None:
        task_id = data.draw(st.sampled_from(self.ids(RUNNING)), label="task")
        expected = self.model[task_id]
        worker = expected.holder
        if stale:  # a worker that does not hold the lease (lost it, or never had it)
            worker = data.draw(st.sampled_from([w for w in WORKERS if w != worker]))
        retry_at = self.now + timedelta(seconds=retry_in)
        settlement = Settlement(
            id=task_id,
            attempt_token=self.token(task_id),
            worker_id=worker,
            status=ending,
            finished_at=self.now,
            return_value=3 if ending == SUCCESSFUL else None,
            error=None if ending == SUCCESSFUL else BOOM,
            retry_at=retry_at if ending == READY else None,
        )
        written = self.broker.settle([settlement])
        assert written == (0 if stale else 1)
        if not stale:
            expected.let_go(ending)
            if ending == READY:
                expected.available_at = retry_at
            else:
                self.finished(task_id)

    @rule(worker=st.sampled_from(WORKERS))
    def renew(self, worker: str) -> None:
        held = self.ids(RUNNING, holder=worker)
        everything = self.ids()  # asking for tasks it does not hold renews none of them
        asked = {i: self.token(i) for i in everything}
        assert self.broker.renew(worker, asked, self.now + LEASE, self.now) == set(held)
        for task_id in held:
            self.model[task_id].lease = self.now + LEASE

    @rule(seconds=st.sampled_from([1, 20, 59, 61, 150]))
    def advance_clock(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(recovery_max_attempts=st.integers(1, 3))
    def recover_expired(self, recovery_max_attempts: int) -> None:
        expired = {
            task_id
            for task_id in self.ids(RUNNING)
            if (lease := self.model[task_id].lease) is not None and lease < self.now
        }
        recovered = self.broker.recover_expired(self.now, recovery_max_attempts)
        assert {r.id for r in recovered} == expired
        for r in recovered:
            expected = self.model[r.id]
            spent = expected.attempts >= allowed_attempts(
                expected.max_attempts, recovery_max_attempts
            )
            assert (r.status, r.worker_id) == (FAILED if spent else READY, expected.holder)
            expected.let_go(r.status)
            if not spent:
                expected.available_at = self.now
            else:
                self.finished(r.id)

    @rule(worker=st.sampled_from(WORKERS))
    def release(self, worker: str) -> None:
        held = self.ids(RUNNING, holder=worker)
        asked = {i: self.token(i) for i in self.ids()}
        assert self.broker.release(worker, asked, self.now) == len(held)
        for task_id in held:
            self.model[task_id].let_go(READY)
            self.model[task_id].available_at = self.now

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.ids()), label="task")
        expected = self.model[task_id]
        answer = self.broker.cancel(task_id, self.now)
        if expected.status == READY:
            assert answer == "cancelled"
            expected.let_go(FAILED)
            expected.waiting_for = None
            self.finished(task_id)
        elif expected.status == RUNNING:
            assert answer == "requested"
            expected.cancel_requested = True
        else:
            assert answer is None
        requested = {i for i in self.ids(RUNNING) if self.model[i].cancel_requested}
        assert self.broker.cancel_requested(self.ids()) == requested

    @rule()
    def pause_or_resume(self) -> None:
        if self.paused:
            assert self.broker.resume_queues([QUEUE]) == [QUEUE]
        else:
            assert self.broker.pause_queues([QUEUE], self.now) == [QUEUE]
        self.paused = not self.paused
        assert (QUEUE in self.broker.paused_queues()) == self.paused

    @precondition(lambda self: bool(self.ids(FAILED)))
    @rule(data=st.data(), extra=st.integers(1, 2))
    def retry_failed(self, data: st.DataObject, extra: int) -> None:
        by_enqueue = sorted(self.ids(FAILED), key=lambda i: (self.model[i].enqueued_at, i))
        assert self.broker.find([FAILED]) == by_enqueue
        task_id = data.draw(st.sampled_from(by_enqueue), label="task")
        expected = self.model[task_id]
        budget = expected.attempts + extra
        assert self.broker.retry_failed({task_id: budget}, self.now) == [task_id]
        assert self.broker.retry_failed({task_id: budget}, self.now) == []  # READY now
        expected.status, expected.max_attempts, expected.available_at = READY, budget, self.now
        self.seen[task_id] = READY  # the one way out of FAILED

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def every_task_is_where_the_model_says(self) -> None:
        for task_id, expected in self.model.items():
            stored = self.broker.get(task_id)
            assert stored is not None, f"task {task_id} was lost"
            assert stored.status == expected.status
            assert stored.attempts == expected.attempts
            if expected.status == RUNNING:  # exactly one live holder: the model's
                assert stored.worker_id == expected.holder
                assert stored.lease_expires_at == expected.lease
            else:
                assert (stored.worker_id, stored.lease_expires_at) == ("", None)
            if expected.status == READY and not expected.waiting:
                assert stored.available_at == expected.available_at
            before = self.seen.get(task_id, READY)
            assert before == stored.status or (before, stored.status) in ALLOWED, (
                f"{task_id}: {before} -> {stored.status}"
            )
            self.seen[task_id] = stored.status

    @invariant()
    def the_counts_add_up(self) -> None:
        counts = Counter(task.status for task in self.model.values() if not task.waiting)
        stats = {s.queue_name: s for s in self.broker.stats()}
        if not counts:
            return
        stat = stats[QUEUE]
        assert (stat.ready, stat.running, stat.successful, stat.failed) == (
            counts[READY],
            counts[RUNNING],
            counts[SUCCESSFUL],
            counts[FAILED],
        )


def database_broker() -> Broker:
    TaskRecord.objects.all().delete()  # each example starts empty (in the test's transaction)
    for model in (TaskDependency, TaskWait, TaskGroup, TaskGroupMember, QueuePause):
        model.objects.all().delete()
    return DatabaseBroker(ALIAS, store_clock=False)  # the machine drives its own clock


@pytest.mark.parametrize(
    "store",
    [
        pytest.param("memory", marks=pytest.mark.once),
        "database",
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_the_broker_contract_holds_for_random_runs(store: str) -> None:
    make: Callable[[], Broker]
    if store == "memory":

        def make() -> Broker:
            return MemoryBroker(ALIAS)

    elif store == "database":
        make = database_broker
    else:
        client = redis_store.client()  # fails (never skips) without Redis

        def make() -> Broker:
            redis_store.delete_keys(client)
            return RedisBroker(ALIAS, client, prefix=redis_store.PREFIX, store_clock=False)

    machine: Any = type(f"{store.title()}BrokerMachine", (BrokerMachine,), {})
    machine.make_broker = staticmethod(make)
    try:
        run_state_machine_as_test(machine, settings=BOUNDED)
    finally:
        if store == "redis":
            redis_store.delete_keys(client)

"""A busy subinterpreter worker gets the pool's next waiting task ahead (``SubinterpreterPool.
_send_ahead``): queued in its interpreter behind the running one, it starts the moment that one
ends, without waiting for the slot's thread in the main interpreter. It stays the pool's to take
back until it starts: a lost lease takes it back (it never runs), and a worker retired while it
waits there hands it to another worker."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.brokers.base import StoredTask
from tandem.execution import Outcome
from tandem.worker.pools.subinterpreters import SubinterpreterPool
from tests.support.doubles import running_task
from tests.support.pools import needs_subinterpreters
from tests.support.processes import wait_until

pytestmark = [needs_subinterpreters, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pool() -> Iterator[tuple[SubinterpreterPool, queue.SimpleQueue[Outcome]]]:
    from tandem.conf import PoolConfig

    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    config = PoolConfig(
        name="ahead",
        queues=("default",),
        workers=1,
        executor="subinterpreter",
        poll_interval=1.0,
        max_attempts=1,
        backoff=1.0,
        idle_close=None,
    )
    subject = SubinterpreterPool(config, outcomes.put)
    assert subject.prove(["tests.tasks"]) is None
    subject.start()
    try:
        yield subject, outcomes
    finally:
        assert subject.stop(30)


def probe(number: int, path: Path, seconds: float) -> StoredTask:
    return running_task(
        id=f"0b4e8e0e-0000-4000-8000-00000000010{number}",
        attempt_token=f"token-{number}",
        task_path="tests.tasks.lease_probe",
        args=[str(path), seconds],
        max_attempts=1,
    )


def busy_with_one_ahead(
    subject: SubinterpreterPool, tmp_path: Path, seconds: float = 30.0
) -> tuple[StoredTask, StoredTask]:
    """Make the worker run a long task with the next one sent ahead; (running, ahead)."""
    first = probe(1, tmp_path / "first", 0.3)  # started by the submitting thread (idle worker)
    running = probe(2, tmp_path / "running", seconds)
    ahead = probe(3, tmp_path / "ahead", 0.0)
    for task in (first, running, ahead):
        subject.submit(task)
    worker = subject._live_slots()[0].handle
    wait_until(lambda: (tmp_path / "running").exists(), "the long task to start")
    wait_until(lambda: worker.ahead is ahead, "the next task to be sent ahead")
    return running, ahead


def test_the_next_task_waits_in_the_interpreter_and_runs_as_the_running_one_ends(
    pool: tuple[SubinterpreterPool, queue.SimpleQueue[Outcome]], tmp_path: Path
) -> None:
    subject, outcomes = pool
    busy_with_one_ahead(subject, tmp_path, seconds=1.0)
    assert not subject._backlog  # it left the pool's backlog for the interpreter
    assert not (tmp_path / "ahead").exists()
    ended = [outcomes.get(timeout=60) for _ in range(3)]
    assert [o.task_id for o in ended] == [
        f"0b4e8e0e-0000-4000-8000-00000000010{n}" for n in (1, 2, 3)
    ]
    assert all(o.succeeded for o in ended), [o.error for o in ended]
    assert subject.restarts == 0


def test_a_task_waiting_ahead_whose_lease_is_lost_never_runs(
    pool: tuple[SubinterpreterPool, queue.SimpleQueue[Outcome]], tmp_path: Path
) -> None:
    subject, outcomes = pool
    running, ahead = busy_with_one_ahead(subject, tmp_path, seconds=1.0)
    assert subject.stop_attempt(ahead.id, ahead.attempt_token)
    assert [outcomes.get(timeout=60).task_id for _ in range(2)] == [
        "0b4e8e0e-0000-4000-8000-000000000101",
        running.id,
    ]
    # The worker goes on (not retired) with the next task; the one taken back never ran.
    subject.submit(probe(4, tmp_path / "next", 0.0))
    assert outcomes.get(timeout=60).task_id.endswith("104")
    assert not (tmp_path / "ahead").exists()
    assert subject.restarts == 0
    with pytest.raises(queue.Empty):
        outcomes.get(timeout=0.2)


def test_a_task_waiting_ahead_of_a_retired_worker_runs_on_its_replacement(
    pool: tuple[SubinterpreterPool, queue.SimpleQueue[Outcome]], tmp_path: Path
) -> None:
    subject, outcomes = pool
    running, ahead = busy_with_one_ahead(subject, tmp_path)
    assert outcomes.get(timeout=60).succeeded  # the first one
    # The running task's lease is lost: it is interrupted and its interpreter retired; the
    # task sent ahead there has not started, and runs on the worker that takes the seat.
    assert subject.stop_attempt(running.id, running.attempt_token)
    outcome = outcomes.get(timeout=60)
    assert outcome.task_id == ahead.id and outcome.succeeded, outcome
    assert (tmp_path / "ahead").read_text().split()[-1] == "end"
    wait_until(
        lambda: (tmp_path / "running").read_text().split()[-1] == "LeaseLost",
        "the running task to be interrupted",
    )
    assert subject.restarts == 1
    with pytest.raises(queue.Empty):
        outcomes.get(timeout=0.2)


def test_a_stop_never_starts_a_task_waiting_ahead(
    pool: tuple[SubinterpreterPool, queue.SimpleQueue[Outcome]], tmp_path: Path
) -> None:
    """Like a task claimed ahead in the pool's backlog: a forced stop released it already."""
    subject, outcomes = pool
    running, _ahead = busy_with_one_ahead(subject, tmp_path, seconds=1.0)
    assert subject.stop(30)
    ended = []
    while not outcomes.empty():
        ended.append(outcomes.get().task_id)
    assert ended == ["0b4e8e0e-0000-4000-8000-000000000101", running.id]
    assert not (tmp_path / "ahead").exists()


def test_a_worker_that_goes_idle_takes_a_task_waiting_ahead_of_a_busy_one(
    tmp_path: Path,
) -> None:
    """Sending ahead is no prefetch that strands a task: while it waits behind a long task, a
    worker that becomes free takes it back and runs it."""
    from tandem.conf import PoolConfig

    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    config = PoolConfig(
        name="steal",
        queues=("default",),
        workers=2,
        executor="subinterpreter",
        poll_interval=1.0,
        max_attempts=1,
        backoff=1.0,
        idle_close=None,
    )
    subject = SubinterpreterPool(config, outcomes.put)
    assert subject.prove(["tests.tasks"]) is None
    subject.start()
    try:
        first, second = (probe(n, tmp_path / f"long-{n}", 120.0) for n in (1, 2))
        for task in (first, second):
            subject.submit(task)
        wait_until(
            lambda: all((tmp_path / f"long-{n}").exists() for n in (1, 2)),
            "both long tasks to start",
        )
        waiting = probe(3, tmp_path / "waiting", 0.0)
        subject.submit(waiting)  # both workers busy: into the backlog
        holder = next(s for s in subject._live_slots() if s.task is first)
        subject._send_ahead(holder, holder.handle)  # as its thread does after starting a task
        assert holder.handle.ahead is waiting and not subject._backlog
        # The other worker is freed (its task's lease lost: a fresh interpreter takes the seat).
        # The task waiting ahead of the holder runs there while the holder's task still runs.
        assert subject.stop_attempt(second.id, second.attempt_token)
        outcome = outcomes.get(timeout=60)
        assert outcome.task_id == waiting.id and outcome.succeeded, outcome
        assert "end" not in (tmp_path / "long-1").read_text().split()  # (120 s: still running)
        assert subject.stop_attempt(first.id, first.attempt_token)
    finally:
        assert subject.stop(30)

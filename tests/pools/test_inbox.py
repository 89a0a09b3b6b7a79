"""An idle subinterpreter worker's ``Inbox`` (``tandem.worker.pools.inbox``): a task put there
starts at once from the thread that puts it, and the worker's thread wakes only when it has
ended; ``STOP`` and a task that cannot start wait in the queue."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from tandem.brokers.base import StoredTask
from tandem.worker.pools.inbox import Inbox
from tests import tasks
from tests.support.doubles import running_task
from tests.support.pools import needs_subinterpreters, pool


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    os.close(read)
    os.close(write)


def test_a_task_put_starts_there_and_then_and_is_got_once_it_ended(pipe: tuple[int, int]) -> None:
    started: list[StoredTask] = []
    inbox = Inbox(lambda task: started.append(task) or True, *pipe)
    task = running_task()
    inbox.put(task)
    assert started == [task]
    with pytest.raises(queue.Empty):  # running: nothing to get yet
        inbox.get(timeout=0.01)
    os.write(pipe[1], b".")  # the interpreter's "ended"
    assert inbox.get(timeout=1) is task
    assert inbox.ended() == b"."
    assert inbox.ended() is None


def test_stop_and_a_task_that_cannot_start_are_queued(pipe: tuple[int, int]) -> None:
    inbox = Inbox(lambda task: False, *pipe)
    task = running_task()
    inbox.put(task)
    assert inbox.get(timeout=1) is task
    assert inbox.ended() is None  # not started: the worker's thread deals with it
    inbox.put(None)
    assert inbox.get() is None
    assert not inbox.lost


def test_a_loop_that_ended_while_idle_is_lost(pipe: tuple[int, int]) -> None:
    inbox = Inbox(lambda task: True, *pipe)
    os.write(pipe[1], b"!")
    assert inbox.get() is None
    assert inbox.lost


@needs_subinterpreters
@pytest.mark.django_db(transaction=True)
def test_a_task_for_an_idle_interpreter_is_sent_by_the_thread_that_submits_it(
    use_pools: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor's thread sends it to the interpreter: the slot's thread, which would need
    the main interpreter's GIL first, is not woken to pass it on; a task that waits in the
    backlog for a busy worker is sent by that worker's thread when it is free."""
    from tandem.worker.pools import subinterpreters
    from tandem.worker.supervisor import Supervisor
    from tests.support.processes import wait_until

    senders: list[str] = []
    send = subinterpreters._Interpreter.send

    def recorded(worker: Any, task: StoredTask, timeout: float | None) -> None:
        senders.append(threading.current_thread().name)
        send(worker, task, timeout)

    monkeypatch.setattr(subinterpreters._Interpreter, "send", recorded)
    use_pools(pools=pool("subinterpreter", workers=1, prefetch=1))
    results = [tasks.sleep.enqueue(0.3), tasks.noop.enqueue()]
    supervisor = Supervisor(burst=True, listen=False)
    here = threading.current_thread().name
    try:
        supervisor.start()
        wait_until(lambda: supervisor.step() >= 0 and supervisor.settled == 2, "both tasks")
    finally:
        supervisor.request_stop()
        supervisor.close()
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert senders[0] == here
    assert senders[1].startswith("tandem-") and senders[1] != here, senders


@needs_subinterpreters
@pytest.mark.django_db(transaction=True)
def test_an_interpreter_whose_loop_ended_while_idle_is_replaced_before_the_next_task() -> None:
    """The worker's thread, waiting for work, hears that the loop ended (``b"!"``): a fresh
    interpreter takes the seat, and the next task runs there instead of failing as crashed."""
    from tandem.conf import PoolConfig
    from tandem.execution import Outcome
    from tandem.worker.pools.subinterpreters import SubinterpreterPool
    from tests.support.processes import wait_until

    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    config = PoolConfig(
        name="lost",
        queues=("default",),
        workers=1,
        executor="subinterpreter",
        poll_interval=1.0,
        max_attempts=1,
        backoff=1.0,
        idle_close=None,
    )
    subject = SubinterpreterPool(config, outcomes.put)
    assert subject.prove([]) is None
    subject.start()
    try:
        first = subject._live_slots()[0]
        wait_until(lambda: first.mailbox in subject._idle, "the worker to wait for work")
        os.write(first.handle.done_w, b"!")
        wait_until(lambda: subject.restarts == 1, "the seat to be given to a fresh worker")
        subject.submit(running_task(task_path="tests.tasks.noop"))
        outcome = outcomes.get(timeout=60)
        assert outcome.succeeded, outcome.error
    finally:
        assert subject.stop(30)

"""Wake-up on Redis: the scripts publish, ``RedisListener`` blocks in a read and wakes the
supervisor — no polling involved."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.utils import timezone

from tandem.brokers.base import SUCCESSFUL, NewTask
from tandem.brokers.listeners import RedisListener
from tandem.brokers.redis import RedisBroker
from tests.support.doubles import wait_for
from tests.support.harness import Harness


def new_task(queue: str = "default", **fields: Any) -> NewTask:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "backend": "default",
        "queue_name": queue,
        "task_path": "tests.tasks.add",
        "priority": 0,
        "takes_context": False,
        "args": [20, 22],
        "kwargs": {},
        "run_after": None,
        "enqueued_at": timezone.now(),
    }
    values.update(fields)
    return NewTask(**values)


class Calls:
    """The listener's callback: records each call's queues."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, queues: list[str]) -> None:
        with self.lock:
            self.calls.append(queues)

    def named(self) -> list[list[str]]:
        with self.lock:
            return [q for q in self.calls if q]


@pytest.fixture
def listening(make_broker: Callable[..., RedisBroker]) -> Iterator[tuple[RedisListener, Calls]]:
    calls = Calls()
    listener = RedisListener(make_broker(), calls)
    listener.start()
    try:
        assert listener.connected.wait(10), "the listener never subscribed"
        yield listener, calls
    finally:
        listener.stop()


def test_the_listener_hears_pushes_of_its_alias_only(
    listening: tuple[RedisListener, Calls], make_broker: Callable[..., RedisBroker]
) -> None:
    listener, calls = listening
    assert calls.calls == [[]]  # on connect: "look once", for anything pushed meanwhile

    elsewhere = make_broker()  # another process's broker: nothing in-process involved
    elsewhere.push([new_task("critical"), new_task("default"), new_task("critical")])
    wait_for(lambda: calls.named() == [["critical", "default"]], "one message for the batch")

    elsewhere.push([new_task(backend="other")])  # another alias publishes on its own channel
    elsewhere.push([new_task(run_after=timezone.now() + timedelta(hours=1))])  # not claimable
    elsewhere.push([new_task("exports")])
    wait_for(lambda: len(calls.named()) == 2, "the exports message")
    assert calls.named() == [["critical", "default"], ["exports"]]
    assert listener.wakes == 2


def test_release_and_recovery_wake_the_listener_too(
    listening: tuple[RedisListener, Calls], make_broker: Callable[..., RedisBroker]
) -> None:
    listener, calls = listening
    broker = make_broker()
    now = timezone.now()
    first, second = new_task(enqueued_at=now), new_task(enqueued_at=now)
    broker.push([first, second])
    wait_for(lambda: listener.wakes == 1, "the push")
    claimed = broker.claim(["default"], 2, "w1", now + timedelta(seconds=1), now)
    tokens = {t.id: t.attempt_token for t in claimed}

    assert broker.release("w1", {first.id: tokens[first.id]}, now) == 1
    wait_for(lambda: listener.wakes == 2, "the release")
    assert [r.id for r in broker.recover_expired(now + timedelta(seconds=2), 3)] == [second.id]
    wait_for(lambda: listener.wakes == 3, "the recovery")
    assert calls.named() == [["default"]] * 3


def test_the_listener_resubscribes_after_its_connection_is_killed(
    listening: tuple[RedisListener, Calls],
    make_broker: Callable[..., RedisBroker],
    redis_client: redis.Redis,
) -> None:
    listener, calls = listening
    session = listener._pubsub
    assert session is not None and session.connection is not None
    host, port = session.connection._sock.getsockname()[:2]  # type: ignore[union-attr]
    address = f"{host}:{port}"

    assert redis_client.client_kill(address)  # this listener's connection only
    wait_for(lambda: len(calls.calls) == 2, "the reconnect (and its 'look once')", timeout=20)
    assert listener.connected.is_set()

    make_broker().push([new_task()])
    wait_for(lambda: listener.wakes == 1, "a message on the new subscription")


def test_a_supervisor_on_redis_is_woken_by_the_listener_not_by_polling(
    redis_backend: Callable[..., None], make_broker: Callable[..., RedisBroker]
) -> None:
    """poll_interval is an hour: only the listener can get the task claimed within the wait."""
    redis_backend(poll_interval=3600, executor="thread")
    harness = Harness()
    try:
        supervisor = harness.supervisor(workers=1, listen=True)
        thread = harness.run_in_background(supervisor)
        wait_for(lambda: supervisor.pools[0].next_poll is not None, "the first (empty) claim")
        listener = supervisor._listener
        assert isinstance(listener, RedisListener)
        assert listener.broker is supervisor.broker
        assert listener.connected.wait(10)
        first_poll_due = supervisor.pools[0].next_poll
        assert first_poll_due > timezone.now() + timedelta(minutes=59)

        task = new_task()
        make_broker().push([task])  # as another process would: no in-process wake-up

        def finished() -> bool:
            stored = supervisor.broker.get(task.id)
            return stored is not None and stored.status == SUCCESSFUL

        wait_for(finished, "the task pushed elsewhere to succeed", timeout=30)
        stored = supervisor.broker.get(task.id)
        assert stored is not None and stored.return_value == 42
        assert listener.wakes >= 1
        assert supervisor.pools[0].next_poll >= first_poll_due  # no poll came due meanwhile
        supervisor.request_stop()
        thread.join(10)
        assert not thread.is_alive()
        assert not listener._thread.is_alive()  # stopped with the supervisor
    finally:
        harness.cleanup()


def test_a_supervisor_without_listen_starts_no_listener(redis_backend: Callable[..., None]) -> None:
    redis_backend(executor="thread")
    harness = Harness()
    try:
        supervisor = harness.supervisor(workers=1, listen=False)
        supervisor.step()
        assert supervisor._listener is None
    finally:
        harness.cleanup()


def test_a_paced_task_costs_one_claim_and_the_next_one_is_still_woken_for(
    redis_backend: Callable[..., None], make_broker: Callable[..., RedisBroker]
) -> None:
    """A claim that found fewer tasks than it asked for left the queues empty: the ending of its
    task does not claim again (no second, empty claim per task) while the listener listens; a
    task pushed afterwards is claimed on its wake-up."""
    redis_backend(poll_interval=3600, executor="thread")
    harness = Harness()
    try:
        supervisor = harness.supervisor(workers=2, listen=True)
        claims: list[int] = []
        claim = supervisor.broker.claim

        def counted(*args: Any, **kwargs: Any) -> Any:
            found = claim(*args, **kwargs)
            claims.append(len(found))
            return found

        supervisor.broker.claim = counted  # type: ignore[method-assign]
        thread = harness.run_in_background(supervisor)
        wait_for(lambda: supervisor.pools[0].next_poll is not None, "the first (empty) claim")
        listener = supervisor._listener
        assert isinstance(listener, RedisListener)
        assert listener.connected.wait(10)
        claims.clear()
        for n in (1, 2, 3):
            task = new_task()
            make_broker().push([task])  # as another process would: no in-process wake-up
            wait_for(lambda n=n: supervisor.settled == n, f"task {n} to be settled", timeout=30)
            stored = supervisor.broker.get(task.id)
            assert stored is not None and stored.status == SUCCESSFUL
        assert claims == [1, 1, 1]  # one claim per task: none after its ending
        supervisor.request_stop()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        harness.cleanup()

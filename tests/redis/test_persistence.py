"""What survives a Redis crash: the claim of docs/how-to/redis.md ("Make enqueued tasks survive a
Redis restart"), shown on a private server that is SIGKILLed and started again on its data.

With the append-only file on, every enqueued task and every state change is back after the crash,
and the tasks carry on (claimed, recovered, settled) as before it. Without persistence — the
control — every task is gone: what the docs say, and why the append-only file matters.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from tandem.brokers.base import FAILED, READY, SUCCESSFUL, NewTask, Settlement
from tandem.brokers.redis import RedisBroker
from tandem.brokers.redis_client import connect
from tandem.conf import RedisOptions
from tests.support.doubles import wait_for
from tests.support.redis_store import PREFIX
from tests.support.servers import PrivateRedis

pytestmark = pytest.mark.redis

TASKS = 200


def new_task(n: int) -> NewTask:
    return NewTask(
        id=str(uuid.uuid4()),
        backend="default",
        queue_name="default",
        task_path="tests.tasks.add",
        priority=0,
        takes_context=False,
        args=[n, 1],
        kwargs={},
        run_after=None,
        enqueued_at=timezone.now() - timedelta(seconds=TASKS - n),
    )


def answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(params=[True, False], ids=["appendonly-yes", "no-persistence"])
def server(request: pytest.FixtureRequest) -> Iterator[PrivateRedis]:
    private = PrivateRedis(append_only=request.param)
    try:
        yield private
    finally:
        private.close()


def test_what_a_redis_crash_keeps(server: PrivateRedis) -> None:
    client = connect(RedisOptions(url=server.url, prefix=PREFIX))
    broker = RedisBroker("default", client, prefix=PREFIX, store_clock=False)
    now = timezone.now()
    tasks = [new_task(n) for n in range(TASKS)]
    assert broker.push(tasks) == [t.id for t in tasks]
    running = broker.claim(["default"], 10, "w1", now + timedelta(seconds=30), now)
    done = [
        Settlement(
            id=t.id,
            attempt_token=broker.get(t.id).attempt_token,
            worker_id="w1",
            status=SUCCESSFUL,
            finished_at=now,
            return_value=1,
        )
        for t in running[:5]
    ]
    assert broker.settle(done) == 5
    before = {t.id: broker.get(t.id) for t in tasks}

    server.crash()  # SIGKILL: no shutdown, no final write
    server.start()
    wait_for(lambda: answers(client), "the restarted Redis to answer", timeout=30)

    if not server.append_only:
        assert [broker.get(t.id) for t in tasks] == [None] * TASKS
        assert broker.stats() == []
        return

    assert {t.id: broker.get(t.id) for t in tasks} == before  # every field of every task
    [stats] = broker.stats()
    assert (stats.ready, stats.running, stats.successful) == (TASKS - 10, 5, 5)

    # The tasks carry on: the five still RUNNING are recovered once their lease expires (their
    # worker is gone), and everything left is claimed in the original order.
    later = now + timedelta(seconds=31)
    recovered = broker.recover_expired(later, recovery_max_attempts=1)
    assert sorted(r.id for r in recovered) == sorted(t.id for t in running[5:])
    assert {r.status for r in recovered} == {FAILED}  # max_attempts 1: spent
    claimed = broker.claim(["default"], TASKS, "w2", later + timedelta(seconds=30), later)
    assert [t.id for t in claimed] == [t.id for t in tasks[10:]]
    assert all(t.status != READY for t in claimed)

"""What the contract cannot see: the key layout, result expiry, script reloading, and how an
unreachable Redis is reported."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tandem.brokers.base import (
    FAILED,
    READY,
    SUCCESSFUL,
    ErrorRecord,
    Settlement,
    WorkerInfo,
)
from tandem.brokers.redis import RedisBroker, score, stamp
from tandem.brokers.redis_client import connect
from tandem.brokers.redis_scripts import SCRIPTS, SOURCES
from tandem.brokers.workflow import Dependency
from tandem.conf import DEFAULT_RESULT_TTL, RedisOptions
from tests.support import free_port
from tests.support.doubles import wait_for
from tests.support.redis_store import LEASE, PREFIX, T0, at, k, keys, new_task

BOOM = ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError: boom\n")


# -- key layout --------------------------------------------------------------------------------


def test_a_task_moves_between_the_documented_keys(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    now_task = new_task(priority=5)
    later = new_task(run_after=at(30))
    broker.push([now_task, later])
    rank = f"{stamp(at(-10))}:{stamp(at(-10))}:{now_task.id}"

    assert keys(redis_client) == sorted(
        [
            k("default", "delayed", "default"),
            k("default", "queues"),
            k("default", "ready", "default"),
            k("task", later.id),
            k("task", now_task.id),
        ]
    )
    assert redis_client.zrange(k("default", "ready", "default"), 0, -1, withscores=True) == [
        (rank, -5.0)
    ]
    assert redis_client.zrange(k("default", "delayed", "default"), 0, -1) == [
        f"{stamp(at(30))}:{stamp(at(-10))}:{later.id}"
    ]
    assert redis_client.smembers(k("default", "queues")) == {"default"}

    [claimed] = broker.claim(["default"], 1, "w1", LEASE, T0)
    assert claimed.id == now_task.id
    assert not redis_client.exists(k("default", "ready", "default"))
    assert redis_client.zrange(k("default", "running", "default"), 0, -1, withscores=True) == [
        (now_task.id, float(score(LEASE)))
    ]

    broker.settle(
        [
            Settlement(
                id=now_task.id,
                attempt_token=broker.get(now_task.id).attempt_token,
                worker_id="w1",
                status=SUCCESSFUL,
                finished_at=at(1),
            )
        ]
    )
    assert not redis_client.exists(k("default", "running", "default"))
    assert redis_client.zrange(k("default", "successful", "default"), 0, -1, withscores=True) == [
        (now_task.id, float(score(at(1))))
    ]
    fields = redis_client.hgetall(k("task", now_task.id))
    assert (fields["status"], fields["rank"], fields["attempts"]) == (SUCCESSFUL, rank, "1")

    # The deferred task is moved to the ready set by the first claim that finds it due.
    [claimed] = broker.claim(["default"], 1, "w1", at(90), at(30))
    assert claimed.id == later.id
    assert not redis_client.exists(k("default", "delayed", "default"))


def test_aliases_share_task_hashes_but_not_queues(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    default, other = make_broker(), make_broker(alias="other")
    mine, theirs = new_task(), new_task(backend="other")
    default.push([mine, theirs])

    assert redis_client.zcard(k("default", "ready", "default")) == 1
    assert redis_client.zcard(k("other", "ready", "default")) == 1
    assert other.get(mine.id) == default.get(mine.id)  # one task table, as in the database
    assert [t.id for t in other.claim(["default"], 5, "w", LEASE, T0)] == [theirs.id]


def test_a_retry_waits_in_the_delayed_set_until_a_claim_finds_it_due(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    task = new_task(max_attempts=2)
    broker.push([task])
    broker.claim(["default"], 1, "w1", LEASE, T0)
    retry = Settlement(
        id=task.id,
        attempt_token=broker.get(task.id).attempt_token,
        worker_id="w1",
        status=READY,
        finished_at=at(1),
        error=BOOM,
        retry_at=at(20),
    )
    assert broker.settle([retry]) == 1

    assert redis_client.zrange(k("default", "delayed", "default"), 0, -1) == [
        f"{stamp(at(20))}:{stamp(at(-10))}:{task.id}"
    ]
    assert broker.claim(["default"], 1, "w2", at(80), at(19)) == []
    assert [t.id for t in broker.claim(["default"], 1, "w2", at(80), at(20))] == [task.id]


# -- result expiry -----------------------------------------------------------------------------


def finish_by_settle(broker: RedisBroker, task_id: str, status: str) -> None:
    broker.claim(["default"], 1, "w1", LEASE, T0)
    error = BOOM if status == FAILED else None
    settlement = Settlement(
        id=task_id,
        attempt_token=broker.get(task_id).attempt_token,
        worker_id="w1",
        status=status,
        finished_at=at(1),
        error=error,
    )
    assert broker.settle([settlement]) == 1


FINISHES = {
    "successful": lambda broker, task_id: finish_by_settle(broker, task_id, SUCCESSFUL),
    "failed": lambda broker, task_id: finish_by_settle(broker, task_id, FAILED),
    "cancelled": lambda broker, task_id: broker.cancel(task_id, at(1)),
    "recovered-failed": lambda broker, task_id: (
        broker.claim(["default"], 1, "w1", LEASE, T0),
        broker.recover_expired(at(61), recovery_max_attempts=1),
    ),
}


@pytest.mark.parametrize("finish", FINISHES.values(), ids=FINISHES.keys())
def test_a_finished_task_expires_after_the_result_ttl(
    finish: Callable[[RedisBroker, str], object],
    make_broker: Callable[..., RedisBroker],
    redis_client: redis.Redis,
) -> None:
    broker = make_broker(result_ttl=3600)
    task = new_task(unique_key="once")
    broker.push([task])
    assert redis_client.pttl(k("task", task.id)) == -1  # READY: no expiry

    finish(broker, task.id)

    stored = broker.get(task.id)
    assert stored is not None and stored.status in (SUCCESSFUL, FAILED)
    assert 3_590_000 < redis_client.pttl(k("task", task.id)) <= 3_600_000
    assert not redis_client.hexists(k("default", "unique"), "once")  # the key is free again


def test_running_tasks_never_expire_and_the_default_ttl_is_a_week(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    assert broker.result_ttl == DEFAULT_RESULT_TTL == 7 * 24 * 3600
    task = new_task()
    broker.push([task])
    broker.claim(["default"], 1, "w1", LEASE, T0)
    assert redis_client.pttl(k("task", task.id)) == -1

    broker.settle(
        [
            Settlement(
                id=task.id,
                attempt_token=broker.get(task.id).attempt_token,
                worker_id="w1",
                status=SUCCESSFUL,
                finished_at=at(1),
            )
        ]
    )

    assert redis_client.pttl(k("task", task.id)) > (DEFAULT_RESULT_TTL - 60) * 1000


def test_result_ttl_none_keeps_finished_tasks_until_pruned(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker(result_ttl=None)
    task = new_task()
    broker.push([task])
    finish_by_settle(broker, task.id, SUCCESSFUL)

    assert redis_client.pttl(k("task", task.id)) == -1
    assert broker.prune(at(2), [SUCCESSFUL]) == 1
    assert not redis_client.exists(k("task", task.id))
    assert not redis_client.exists(k("default", "successful", "default"))


def test_an_expired_result_is_gone_and_no_longer_counted(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker(result_ttl=0.3)
    now = datetime.now(UTC)  # real time: Redis expires keys by its own clock
    task = new_task(enqueued_at=now)
    broker.push([task])
    broker.claim(["default"], 1, "w1", now + timedelta(seconds=60), now)
    broker.settle(
        [
            Settlement(
                id=task.id,
                attempt_token=broker.get(task.id).attempt_token,
                worker_id="w1",
                status=SUCCESSFUL,
                finished_at=now,
            )
        ]
    )
    assert [s.successful for s in broker.stats()] == [1]

    wait_for(lambda: broker.get(task.id) is None, "the result to expire", timeout=10)
    wait_for(lambda: broker.stats() == [], "stats to stop counting it", timeout=10)
    assert not redis_client.exists(k("default", "successful", "default"))
    assert broker.prune(datetime.now(UTC), [SUCCESSFUL]) == 0


# -- scripts -----------------------------------------------------------------------------------


def test_every_transition_is_a_script_that_loads(redis_client: redis.Redis) -> None:
    assert set(SCRIPTS) >= {
        "push",
        "claim",
        "renew",
        "settle",
        "release",
        "recover",
        "cancel",
        "save_progress",
        "prune",
        "fire_tick",
    }
    for name, source in SOURCES.items():
        sha = redis_client.script_load(source)
        assert redis_client.script_exists(sha) == [True], name


def test_scripts_are_loaded_again_after_script_flush(
    make_broker: Callable[..., RedisBroker], redis_client: redis.Redis
) -> None:
    broker = make_broker()
    # Unique keys: pushed by the script (a task without one is stored without a script).
    first, second = new_task(enqueued_at=at(-20), unique_key="a"), new_task(unique_key="b")
    broker.push([first])
    push_sha = broker._scripts["push"].sha
    assert redis_client.script_exists(push_sha) == [True]

    redis_client.script_flush()  # what a restart or a failover to a fresh replica does
    assert redis_client.script_exists(push_sha) == [False]

    broker.push([second])  # NOSCRIPT: loaded again and retried, once
    claimed = broker.claim(["default"], 5, "w1", LEASE, T0)
    assert [t.id for t in claimed] == [first.id, second.id]
    assert redis_client.script_exists(push_sha) == [True]


# -- an unreachable Redis ----------------------------------------------------------------------


def test_an_unreachable_redis_is_a_connection_error_the_supervisor_retries() -> None:
    # A loopback port nobody listens on: the connection is refused at once.
    client = connect(RedisOptions(url=f"redis://127.0.0.1:{free_port()}/0", prefix=PREFIX))
    broker = RedisBroker("default", client, prefix=PREFIX, store_clock=False)

    with pytest.raises(ConnectionError, match=r"^Redis: ") as caught:
        broker.claim(["default"], 1, "w1", LEASE, T0)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(ConnectionError):
        broker.push([new_task()])
    from tandem.worker.supervisor import STORE_ERRORS

    assert isinstance(caught.value, STORE_ERRORS)


def test_every_script_is_run_by_a_broker_method(
    make_broker: Callable[..., RedisBroker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No script is dead code: each is reached through the broker API, so the contract tests
    (which drive that API on Redis) test each one."""
    broker = make_broker()
    ran: list[str] = []
    run = broker._run

    def spy(name: str, *args: str | int) -> Any:
        ran.append(name)
        return run(name, *args)

    monkeypatch.setattr(broker, "_run", spy)
    # A unique key: the push script (a task without one is stored without a script).
    task, tick_task = new_task(unique_key="every-script"), new_task()
    worker = WorkerInfo(
        id="w1",
        backend="default",
        hostname="host",
        pid=1,
        queues=("default",),
        pools={},
        started_at=T0,
        last_heartbeat_at=T0,
        tasks_done=0,
    )
    broker.push([task])
    broker.has_ready(["default"], T0)
    broker.claim(["default"], 1, "w1", LEASE, T0)
    current = broker.get(task.id).attempt_token
    broker.renew("w1", {task.id: current}, LEASE, T0)
    broker.save_progress(task.id, "w1", {"done": 1}, T0, attempt_token=current)
    broker.cancel(task.id, T0)
    broker.release("w1", {task.id: current}, T0)
    broker.claim(["default"], 1, "w1", LEASE, T0)
    broker.recover_expired(at(61), recovery_max_attempts=3)
    broker.claim(["default"], 1, "w1", at(120), at(61))
    broker.settle(
        [
            Settlement(
                id=task.id,
                attempt_token=broker.get(task.id).attempt_token,
                worker_id="w1",
                status=SUCCESSFUL,
                finished_at=at(62),
            )
        ]
    )
    broker.count_finished(at(100), [SUCCESSFUL])
    broker.prune(at(100), [SUCCESSFUL])
    broker.fire_tick("nightly", T0, tick_task)
    broker.prune_ticks("nightly", T0)
    broker.stats()
    broker.register_worker(worker)
    broker.heartbeat_worker("w1", at(1), 1)
    broker.forget_workers(T0)
    broker.unregister_worker("w1")
    parent, child = new_task(), new_task()
    broker.push_workflow([parent, child], [Dependency(task_id=child.id, parent_ids=(parent.id,))])
    broker.pause_queues(["default"], T0)
    broker.resume_queues(["default"])
    broker.claim_starved(["default"], 1, "w1", LEASE, T0, T0)
    failed = new_task()
    broker.push([failed])
    broker.cancel(failed.id, T0)  # READY: FAILED at once
    broker.retry_failed({failed.id: 2}, T0)

    assert set(ran) == set(SCRIPTS)


def test_a_claim_returns_each_task_whole_whatever_its_characters(
    make_broker: Callable[..., RedisBroker],
) -> None:
    # The claim packs each task's hash into one reply string (lengths in bytes): text that is
    # not ASCII must come back as it went in, next to text that is.
    broker = make_broker()
    plain = new_task(enqueued_at=at(-20), kwargs={"name": "plain"})
    fancy = new_task(
        args=["Zoë", "✓", "🎉", ""],
        kwargs={"naïve": "日本語", "empty": ""},
        concurrency_key="tenant:ü",
        rate_limit="5/s",
    )
    broker.push([plain, fancy])
    claimed = broker.claim(["default"], 5, "w1", LEASE, T0)
    assert [t.id for t in claimed] == [plain.id, fancy.id]
    assert claimed[0].kwargs == {"name": "plain"}
    assert (claimed[1].args, claimed[1].kwargs) == (fancy.args, fancy.kwargs)
    assert (claimed[1].concurrency_key, claimed[1].rate_limit) == ("tenant:ü", "5/s")
    assert claimed[1] == broker.get(fancy.id)

"""stats and the worker registry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tandem.brokers.base import FAILED, QueueStats, Settlement, WorkerInfo
from tests.contract.conftest import ALIAS, T0, at, succeed, token

pytestmark = pytest.mark.django_db


def by_queue(stats):
    return {s.queue_name: s for s in stats}


def test_stats_of_an_empty_store(broker):
    assert broker.stats() == []


def test_stats_counts_per_queue_and_oldest_ready(broker, push):
    # default: 2 ready (oldest available at -30), 1 running, 1 successful, 1 failed
    push(queue_name="default", run_after=at(-30), enqueued_at=at(-40))
    push(queue_name="default", run_after=at(500), enqueued_at=at(-50))  # future still counts
    running, done, failed = (push(queue_name="default", priority=100) for _ in range(3))
    push(queue_name="critical", enqueued_at=at(-5))
    push(queue_name="exports", backend="other", enqueued_at=at(-999))
    claimed = broker.claim(["default"], 3, "w1", at(60), T0)
    assert {t.id for t in claimed} == {running.id, done.id, failed.id}
    broker.settle(
        [
            succeed(done.id, "w1", T0),
            Settlement(
                id=failed.id,
                attempt_token=token(failed.id),
                worker_id="w1",
                status=FAILED,
                finished_at=T0,
            ),
        ]
    )

    stats = by_queue(broker.stats())

    assert set(stats) == {"default", "critical"}
    assert stats["default"] == QueueStats(
        queue_name="default", ready=2, running=1, failed=1, successful=1, oldest_ready_at=at(-30)
    )
    assert stats["critical"] == QueueStats(queue_name="critical", ready=1, oldest_ready_at=at(-5))


def test_stats_of_a_queue_with_nothing_ready(broker, push):
    new = push(queue_name="exports")
    broker.claim(["exports"], 1, "w1", at(60), T0)
    broker.settle([succeed(new.id, "w1", at(1))])

    assert broker.stats() == [QueueStats(queue_name="exports", successful=1)]


# -- worker registry ---------------------------------------------------------------------------


def make_worker(worker_id: str, heartbeat, **fields) -> WorkerInfo:
    values = {
        "id": worker_id,
        "backend": ALIAS,
        "hostname": "host-1",
        "pid": 4242,
        "queues": ("default", "critical"),
        "pools": {"default": {"workers": 4, "queues": ["default"]}, "critical": {"workers": 2}},
        "started_at": at(-3600),
        "last_heartbeat_at": heartbeat,
        "tasks_done": 0,
    }
    values.update(fields)
    return WorkerInfo(**values)


def test_register_round_trips_every_field(broker):
    worker = make_worker("w1", T0, tasks_done=17, hostname="web-3.example", pid=99999)

    broker.register_worker(worker)

    assert broker.workers() == [worker]


def test_workers_newest_heartbeat_first_and_only_this_backend(broker):
    broker.register_worker(make_worker("old", at(-100)))
    broker.register_worker(make_worker("new", at(-1)))
    broker.register_worker(make_worker("mid", at(-50)))
    broker.register_worker(make_worker("elsewhere", T0, backend="other"))

    assert [w.id for w in broker.workers()] == ["new", "mid", "old"]


def test_register_again_replaces(broker):
    broker.register_worker(make_worker("w1", at(-100), pid=1))
    replacement = make_worker("w1", T0, pid=2, queues=("exports",), pools={"exports": {}})

    broker.register_worker(replacement)

    assert broker.workers() == [replacement]


def test_heartbeat_records_liveness_and_progress(broker):
    worker = make_worker("w1", at(-100))
    broker.register_worker(worker)
    broker.register_worker(make_worker("w2", at(-50)))

    broker.heartbeat_worker("w1", T0, tasks_done=12)

    assert broker.workers() == [
        replace(worker, last_heartbeat_at=T0, tasks_done=12),
        make_worker("w2", at(-50)),
    ]


def test_heartbeat_of_an_unknown_worker_registers_nothing(broker):
    broker.heartbeat_worker("ghost", T0, tasks_done=1)

    assert broker.workers() == []


def test_forget_workers_removes_the_silent_ones(broker, other_broker):
    broker.register_worker(make_worker("silent", at(-100)))
    broker.register_worker(make_worker("edge", at(-60)))
    broker.register_worker(make_worker("alive", at(-1)))
    other_broker.register_worker(make_worker("other-silent", at(-100), backend="other"))

    forgotten = broker.forget_workers(silent_since=at(-60))

    assert forgotten == 1
    assert [w.id for w in broker.workers()] == ["alive", "edge"]
    assert [w.id for w in other_broker.workers()] == ["other-silent"]


def test_unregister(broker):
    broker.register_worker(make_worker("w1", T0))
    broker.register_worker(make_worker("w2", T0))

    broker.unregister_worker("w1")
    broker.unregister_worker("never-registered")

    assert [w.id for w in broker.workers()] == ["w2"]

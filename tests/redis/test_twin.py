"""The Redis broker against its model: random runs of every broker call, applied to a
RedisBroker and to the in-memory twin, must give the same answers and leave the same tasks.

The memory broker is the contract's plainest implementation (a dict and a sort), so any
difference is a Redis bug, or a contract ambiguity worth a contract test.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tandem.brokers.base import (
    FAILED,
    READY,
    SUCCESSFUL,
    Broker,
    ErrorRecord,
    NewTask,
    Settlement,
    StoredTask,
)
from tandem.brokers.memory import MemoryBroker
from tandem.brokers.redis import RedisBroker

T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
QUEUES = ["default", "critical", "exports"]
WORKERS = ["w1", "w2", "w3"]
OPERATIONS = [
    *("push", "push", "claim", "claim", "settle", "settle", "renew", "release", "recover"),
    *("cancel", "progress", "prune", "count", "tick", "has_ready", "stats", "requested"),
]
BOOM = ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError: boom\n")


def token_in(broker: Broker, task_id: str) -> str:
    """The task's current attempt token in ``broker`` (each store draws its own tokens)."""
    task = broker.get(task_id)
    return task.attempt_token if task is not None else ""


def untokened(value: Any) -> Any:
    """``value`` with attempt tokens blanked: the twins agree on everything but their tokens."""
    if isinstance(value, StoredTask):
        return replace(value, attempt_token="")
    if isinstance(value, list):
        return [untokened(v) for v in value]
    return value


class Run:
    """One random scenario, applied step by step to both brokers."""

    def __init__(self, seed: int, redis_broker: RedisBroker, other: RedisBroker) -> None:
        self.random = random.Random(seed)
        memory = MemoryBroker("default")
        memory_other = MemoryBroker("other")
        memory_other._tasks = memory._tasks
        memory_other._lock = memory._lock
        memory_other._workers = memory._workers
        memory_other._ticks = memory._ticks
        self.pairs: list[tuple[Broker, Broker]] = [(memory, redis_broker), (memory_other, other)]
        self.now = T0
        self.ids: list[str] = []
        self.serial = 0
        self.log: list[str] = []

    def both(self, call: Callable[[Broker], Any], *, unordered: bool = False) -> Any:
        pair = self.pairs[0] if self.random.random() < 0.85 else self.pairs[1]
        expected, got = untokened(call(pair[0])), untokened(call(pair[1]))
        if unordered:
            expected, got = sorted(expected, key=repr), sorted(got, key=repr)
        assert got == expected, "\n".join(self.log[-15:])
        return got

    def running(self) -> list[str]:
        model = self.pairs[0][0]
        return [i for i in self.ids if (t := model.get(i)) is not None and t.status == "RUNNING"]

    def worker_for(self, task_id: str) -> str:
        """Mostly the task's lease holder (per the model), so guarded calls mostly succeed."""
        task = self.pairs[0][0].get(task_id)
        if task is not None and task.worker_id and self.random.random() < 0.75:
            return task.worker_id
        return self.random.choice(WORKERS)

    def new_task(self) -> NewTask:
        self.serial += 1
        r = self.random
        run_after = None
        if r.random() < 0.3:
            run_after = self.now + timedelta(seconds=r.choice([-5, 0, 3, 10, 0.000001]))
        return NewTask(
            id=str(uuid.uuid4()),
            backend=r.choice(["default", "default", "default", "other"]),
            queue_name=r.choice(QUEUES),
            task_path="tests.tasks.add",
            priority=r.choice([-10, 0, 0, 5, 100]),
            takes_context=False,
            args=[self.serial],
            kwargs={},
            run_after=run_after,
            # Distinct enqueued_at: the claim order has no ties for the stores to break apart.
            enqueued_at=self.now + timedelta(microseconds=self.serial),
            max_attempts=r.choice([1, 2, 3]),
            unique_key=r.choice([None, None, None, "k1", "k2"]),
            **self.flow_control(),
        )

    def flow_control(self) -> dict[str, Any]:
        """A concurrency key on about a third of the tasks: limits 1 and 2, wait and discard."""
        r = self.random
        if r.random() < 0.65:
            return {}
        return {
            "concurrency_key": r.choice(["c1", "c2"]),
            "concurrency_limit": r.choice([1, 1, 2]),
            "on_limit": r.choice(["wait", "wait", "discard"]),
        }

    def step(self) -> None:
        r = self.random
        jump = r.choices([0, 0.5, 1, 2, 7, 30, 61, -1], weights=[3, 3, 3, 2, 1, 1, 1, 1])[0]
        self.now += timedelta(seconds=jump)  # -1: a claimer whose clock is behind
        now = self.now
        # Mostly running or recent tasks: there the rules are; any task, or none, sometimes.
        running = self.running()
        known = running if running and r.random() < 0.6 else self.ids[-8:]
        if r.random() < 0.2:
            known = self.ids
        known = known or ["00000000-0000-0000-0000-000000000000"]
        op = r.choice(OPERATIONS)
        self.log.append(f"{op} at {now.isoformat()}")
        if op == "push":
            batch = [self.new_task() for _ in range(r.randint(1, 4))]
            self.both(lambda b: b.push(batch))
            self.ids += [t.id for t in batch]
        elif op == "claim":
            queues = r.sample(QUEUES, r.randint(1, 3))
            limit, worker = r.randint(0, 4), r.choice(WORKERS)
            self.both(lambda b: b.claim(queues, limit, worker, now + timedelta(seconds=60), now))
        elif op == "settle":
            settlements = self.settlements(now)
            self.both(
                lambda b: b.settle(
                    [replace(s, attempt_token=token_in(b, s.id)) for s in settlements]
                )
            )
        elif op == "renew":
            ids = r.sample(known, min(3, len(known)))
            worker = self.worker_for(ids[0])
            self.both(
                lambda b: b.renew(
                    worker, {i: token_in(b, i) for i in ids}, now + timedelta(seconds=60), now
                )
            )
        elif op == "release":
            ids = r.sample(known, min(3, len(known)))
            worker = self.worker_for(ids[0])
            self.both(lambda b: b.release(worker, {i: token_in(b, i) for i in ids}, now))
        elif op == "recover":
            attempts = r.choice([1, 2, 3])
            self.both(lambda b: b.recover_expired(now, attempts), unordered=True)
        elif op == "cancel":
            task_id = r.choice(known)
            self.both(lambda b: b.cancel(task_id, now))
        elif op == "progress":
            task_id = r.choice(known)
            worker = self.worker_for(task_id)
            data = {"done": r.randint(0, 9), "of": [1, None]}
            self.both(
                lambda b: b.save_progress(
                    task_id, worker, data, now, attempt_token=token_in(b, task_id)
                )
            )
        elif op == "prune":
            statuses = r.sample([SUCCESSFUL, FAILED, READY], r.randint(0, 3))
            before = now - timedelta(seconds=r.choice([0, 10, 100]))
            self.both(lambda b: b.prune(before, statuses))
        elif op == "count":
            statuses = r.sample([SUCCESSFUL, FAILED, READY], r.randint(0, 3))
            before = now - timedelta(seconds=r.choice([0, 10, 100]))
            self.both(lambda b: b.count_finished(before, statuses))
        elif op == "tick":
            name, tick = r.choice(["a", "b"]), T0 + timedelta(minutes=r.randint(0, 3))
            task = self.new_task()
            self.both(lambda b: b.fire_tick(name, tick, task))
            self.both(lambda b: b.last_tick(name))
            self.ids.append(task.id)
        elif op == "has_ready":
            queues = r.sample(QUEUES, r.randint(1, 3))
            self.both(lambda b: b.has_ready(queues, now))
        elif op == "stats":
            self.both(lambda b: b.stats())
        elif op == "requested":
            ids = r.sample(known, min(4, len(known)))
            self.both(lambda b: b.cancel_requested(ids))

    def settlements(self, now: datetime) -> list[Settlement]:
        r = self.random
        chosen = []
        pool = self.running() if r.random() < 0.7 else self.ids[-8:]
        for task_id in r.sample(pool, min(3, len(pool))):
            worker = self.worker_for(task_id)
            kind = r.choice([SUCCESSFUL, FAILED, "FAILED-error", READY])
            if kind == SUCCESSFUL:
                chosen.append(
                    Settlement(
                        id=task_id,
                        attempt_token="",  # each broker's own: see settle
                        worker_id=worker,
                        status=SUCCESSFUL,
                        finished_at=now,
                        return_value={"n": r.randint(0, 9)},
                    )
                )
            elif kind == READY:
                retry_at = now + timedelta(seconds=r.choice([0, 1, 5]))
                chosen.append(
                    Settlement(
                        id=task_id,
                        attempt_token="",  # each broker's own: see settle
                        worker_id=worker,
                        status=READY,
                        finished_at=now,
                        error=BOOM,
                        retry_at=retry_at,
                    )
                )
            else:
                error = BOOM if kind == "FAILED-error" else None
                chosen.append(
                    Settlement(
                        id=task_id,
                        attempt_token="",
                        worker_id=worker,
                        status=FAILED,
                        finished_at=now,
                        error=error,
                    )
                )
        return chosen

    def check_every_task(self) -> None:
        memory, redis_broker = self.pairs[0]
        for task_id in self.ids:
            assert untokened(redis_broker.get(task_id)) == untokened(memory.get(task_id)), task_id


@pytest.mark.parametrize("seed", range(12))
def test_random_runs_match_the_memory_twin(
    seed: int, make_broker: Callable[..., RedisBroker]
) -> None:
    run = Run(seed, make_broker(result_ttl=None), make_broker(alias="other", result_ttl=None))
    for step in range(1, 151):
        run.step()
        if step % 5 == 0:
            run.check_every_task()

"""RQ queue and task for ``rq-redis``. Jobs keep no result (``result_ttl=0``)."""

from __future__ import annotations

import os

from redis import Redis
from rq import Queue

from contenders.marks import mark

connection = Redis.from_url(os.environ["BENCH_REDIS_URL"])
queue = Queue("default", connection=connection)


def noop(stamp: float = 0.0) -> None:
    mark(stamp)


def driver():
    connection.ping()

    def one(stamp: float) -> object:
        return queue.enqueue(noop, stamp, result_ttl=0)

    def many(n: int) -> object:
        jobs = [Queue.prepare_data(noop, (0.0,), result_ttl=0) for _ in range(n)]
        return queue.enqueue_many(jobs)

    return one, many

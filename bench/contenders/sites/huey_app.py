"""huey app for ``huey-sqlite`` and ``huey-redis``: ``BENCH_HUEY_STORE`` picks the storage.

Consumer: ``python -m huey.bin.huey_consumer contenders.sites.huey_app.huey -w 4 -k thread``.
Results are off (``results=False``): completions are counted through the marks file.
"""

from __future__ import annotations

import os

from huey import RedisHuey, SqliteHuey

from contenders.marks import mark

if os.environ.get("BENCH_HUEY_STORE") == "sqlite":
    # huey's defaults otherwise: WAL, SQLite's default synchronous (FULL), 5 s busy timeout.
    huey = SqliteHuey("bench", filename=os.environ["BENCH_HUEY_SQLITE"], results=False)
else:
    # RedisHuey's default blocking dequeue (BRPOP), so the consumer does not poll.
    huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"], results=False)


@huey.task()
def noop(stamp: float = 0.0) -> None:
    mark(stamp)


def driver():
    if isinstance(huey, RedisHuey):
        huey.storage.conn.ping()
    # huey has no bulk enqueue: ``Task.map`` enqueues one at a time.
    return (lambda stamp: noop(stamp)), None

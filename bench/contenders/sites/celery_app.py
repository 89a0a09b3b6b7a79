"""Celery app for ``celery-redis``: Redis broker on the benchmark's database, no result backend.

Worker: ``python -m celery -A contenders.sites.celery_app worker -P prefork -c 2``.
"""

from __future__ import annotations

import os

from celery import Celery

from contenders.marks import mark

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,  # no result backend: completions are counted through the marks file
    result_backend=None,
    broker_connection_retry_on_startup=True,
    # Celery's defaults, stated: prefetch 4 per process, ack before running (acks_late off), and
    # the Redis transport's 1 h visibility timeout (it only matters for unacked messages).
    worker_prefetch_multiplier=4,
    task_acks_late=False,
    broker_transport_options={"visibility_timeout": 3600},
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(stamp: float = 0.0) -> None:
    mark(stamp)


def driver():
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
    # No native bulk enqueue: a group's apply_async publishes one message per task.
    return (lambda stamp: noop.delay(stamp)), None

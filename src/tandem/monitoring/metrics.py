"""Prometheus exposition: the store's gauges, computed at scrape time, plus this process's counters.

Gauges (``tandem_queue_*``, ``tandem_workers``) come from every tandem backend's broker at each
scrape, so any process that can reach the store shows them. Counters and histograms
(``tandem_tasks_total``, ``tandem_task_duration_seconds``, …) are kept by the supervisors of the
process that answers the scrape (see ``tandem.worker.telemetry``): scrape every process that runs
workers (``tandem serve``'s ``/-/metrics``, or a web process with ``tandem.embedded``).

Access: a scraper cannot log in, so it presents ``Authorization: Bearer <TANDEM_METRICS_TOKEN>``;
the Django view also lets staff users in through their session.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tandem.monitoring import status
from tandem.worker import telemetry

logger = logging.getLogger("tandem.monitoring")

CONTENT_TYPE = CONTENT_TYPE_LATEST


class StoreCollector(Collector):
    """Queue depth, running and failed counts, oldest-ready age and live workers per backend."""

    def collect(self) -> Iterator[Metric]:
        labels = ["backend", "queue"]
        ready = GaugeMetricFamily(
            "tandem_queue_ready_tasks", "READY tasks per queue.", labels=labels
        )
        running = GaugeMetricFamily(
            "tandem_queue_running_tasks", "RUNNING tasks per queue.", labels=labels
        )
        failed = GaugeMetricFamily(
            "tandem_queue_failed_tasks", "FAILED tasks kept in the store per queue.", labels=labels
        )
        age = GaugeMetricFamily(
            "tandem_queue_oldest_ready_age_seconds",
            "How long the oldest due READY task of a queue has waited (0: none is waiting).",
            labels=labels,
        )
        live = GaugeMetricFamily(
            "tandem_queue_live_workers", "Live supervisors serving a queue.", labels=labels
        )
        paused = GaugeMetricFamily(
            "tandem_queue_paused",
            "1 while a queue is paused (tandem.pause / tandem pause): none of its tasks start.",
            labels=labels,
        )
        rate_wait = GaugeMetricFamily(
            "tandem_rate_limited_seconds",
            "Seconds until a full rate limit (a task's rate_limit or a pool's) lets its next "
            "task start; only full limits are listed.",
            labels=["backend", "limit"],
        )
        workers = GaugeMetricFamily(
            "tandem_workers", "Live supervisors (heartbeat within the lease).", labels=["backend"]
        )
        pool_workers = GaugeMetricFamily(
            "tandem_pool_executor_workers",
            "Workers of live supervisors per pool and the executor really in use (it differs "
            "from configured_executor when the configured one could not start).",
            labels=["backend", "pool", "executor", "configured_executor"],
        )
        pool_failing = GaugeMetricFamily(
            "tandem_pool_failing",
            "Live supervisors whose pool's workers cannot start (their tasks fail).",
            labels=["backend", "pool"],
        )
        up = GaugeMetricFamily(
            "tandem_store_up",
            "1 when the backend's store answered this scrape.",
            labels=["backend"],
        )
        for alias in status.tandem_aliases():
            try:
                snapshot = status.take(alias)
            except Exception as exc:
                logger.warning("metrics: could not read the store of backend %r: %s", alias, exc)
                up.add_metric([alias], 0.0)
                continue
            up.add_metric([alias], 1.0)
            workers.add_metric([alias], float(len(snapshot.live_workers)))
            sizes: dict[tuple[str, str, str], float] = {}
            failing: dict[str, float] = {}
            for worker in snapshot.live_workers:
                for name, pool in worker.pools.items():
                    executor = str(pool.get("executor", ""))
                    key3 = (name, executor, str(pool.get("configured_executor") or executor))
                    sizes[key3] = sizes.get(key3, 0.0) + float(pool.get("workers", 0))
                    failing[name] = failing.get(name, 0.0) + (1.0 if pool.get("failing") else 0.0)
            for (name, executor, configured), size in sorted(sizes.items()):
                pool_workers.add_metric([alias, name, executor, configured], size)
            for name, count in sorted(failing.items()):
                pool_failing.add_metric([alias, name], count)
            for queue in snapshot.queues:
                key = [alias, queue.name]
                ready.add_metric(key, float(queue.ready))
                running.add_metric(key, float(queue.running))
                failed.add_metric(key, float(queue.failed))
                age.add_metric(key, queue.oldest_ready_age or 0.0)
                live.add_metric(key, float(queue.live_workers))
                paused.add_metric(key, 1.0 if queue.paused else 0.0)
            for wait in snapshot.rate_limited:
                rate_wait.add_metric([alias, wait.limit], wait.wait)
        yield from (ready, running, failed, age, live, paused, rate_wait, workers)
        yield from (pool_workers, pool_failing, up)


class _ProcessCollector(Collector):
    """This process's counters and histograms (tandem's own registry), re-exposed.

    Without the ``*_created`` series prometheus_client adds to each counter and histogram: one
    more gauge per label set (per task and queue), which no dashboard of ours reads.
    """

    def collect(self) -> Iterator[Metric]:
        for family in telemetry.REGISTRY.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


def exposition() -> bytes:
    """The text format for one scrape: the store's gauges and this process's counters."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector())
    registry.register(_ProcessCollector())
    return generate_latest(registry)


def token() -> str | None:
    value = getattr(settings, "TANDEM_METRICS_TOKEN", None)
    return str(value) if value else None


def bearer_ok(authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries the configured token (constant-time)."""
    expected = token()
    if not expected or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


__all__ = ["CONTENT_TYPE", "StoreCollector", "bearer_ok", "exposition", "token"]

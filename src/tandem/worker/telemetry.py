"""What a supervisor reports about the attempts it settles: Prometheus metrics and log lines.

The supervisor calls ``settled()`` once per batch of attempt endings it wrote and
``recovered()`` once per heartbeat's lease recovery; nothing else here touches the loop. Counters
and histograms live in ``REGISTRY`` (tandem's own, not prometheus_client's global one), so they
count what the supervisors *of this process* settled; ``tandem.monitoring.metrics`` adds the
store's gauges at scrape time and exposes both.

Every settled attempt also gives one log line on the ``tandem.tasks`` logger, with stable keys in
``extra`` for structured (JSON) formatters: ``task_id``, ``task_path``, ``queue``, ``backend``,
``status`` (``SUCCESSFUL``, ``FAILED`` or ``READY`` for a retry), ``outcome`` (``succeeded``,
``failed``, ``retried``), ``duration_ms``, ``attempt``, ``worker_id`` and, for a failed attempt,
``error`` (one line: ``ValueError: boom``; the traceback stays on the result).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tandem.brokers.base import FAILED, READY, SUCCESSFUL, Recovered, Settlement, StoredTask

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from tandem.worker.supervisor import Supervisor

logger = logging.getLogger("tandem.tasks")

OUTCOMES = {SUCCESSFUL: "succeeded", FAILED: "failed", READY: "retried"}
# Seconds: from a few milliseconds (an email hand-off) to an hour (an export).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

REGISTRY = CollectorRegistry(auto_describe=True)

TASKS = Counter(
    "tandem_tasks",
    "Attempts settled by this process's supervisors, by outcome: succeeded, failed (for good) "
    "or retried (back to READY after a failure).",
    ["backend", "queue", "task", "outcome"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "tandem_task_duration_seconds",
    "How long attempts ran, from claim to outcome, by task and queue.",
    ["backend", "queue", "task"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
RETRIES = Counter(
    "tandem_task_retries",
    "Failed attempts this process's supervisors sent back to READY to run again (the same "
    'count as tandem_tasks_total{outcome="retried"}, as one series for alerts).',
    ["backend", "queue", "task"],
    registry=REGISTRY,
)
RECOVERED = Counter(
    "tandem_recovered_leases",
    "Expired leases (a worker that died) this process's supervisors recovered, by the status "
    "the task got: READY (to run again) or FAILED (attempts spent).",
    ["backend", "status"],
    registry=REGISTRY,
)

_supervisors: weakref.WeakSet[Supervisor] = weakref.WeakSet()
#: Labelled series by (metric, label values): ``labels()`` costs more than the count itself.
_labelled: dict[tuple[object, ...], Any] = {}


def _series(metric: Counter | Histogram, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once per process (prometheus_client keeps each
    series until it is removed, which tandem never does)."""
    key = (metric, *values)
    series = _labelled.get(key)
    if series is None:
        series = _labelled[key] = metric.labels(*values)
    return series


def settled(supervisor: Supervisor, endings: Iterable[tuple[StoredTask, Settlement]]) -> None:
    """Count, time and log attempt endings ``supervisor`` has just written to the store: each
    with the settlement the settler decided (``worker/settlement.py``; nothing is re-derived here).

    Never raises: a reporting failure must not disturb the loop (it is logged).
    """
    _supervisors.add(supervisor)
    try:
        backend = supervisor.backend.alias
        for task, ending in endings:
            outcome = OUTCOMES[ending.status]
            started = task.last_attempted_at
            seconds = max(0.0, (ending.finished_at - started).total_seconds()) if started else 0.0
            queue, path = task.queue_name, task.task_path
            _series(TASKS, backend, queue, path, outcome).inc()
            _series(DURATION, backend, queue, path).observe(seconds)
            if ending.status == READY:
                _series(RETRIES, backend, queue, path).inc()
            _log(backend, task, ending, outcome, seconds)
    except Exception:
        logger.exception("could not record settled tasks")


def _log(backend: str, task: StoredTask, ending: Settlement, outcome: str, seconds: float) -> None:
    """The attempt's ``task finished`` line (WARNING for a failure, INFO otherwise)."""
    status = ending.status
    level = logging.WARNING if status == FAILED else logging.INFO
    if not logger.isEnabledFor(level):
        return  # (the line's fields cost more than the rest)
    fields = {
        "task_id": task.id,
        "task_path": task.task_path,
        "queue": task.queue_name,
        "backend": backend,
        "status": status,
        "outcome": outcome,
        "duration_ms": round(seconds * 1000),
        "attempt": task.attempts,
        "worker_id": ending.worker_id,
    }
    error = error_line(ending)
    if error:
        fields["error"] = error
    logger.log(
        level,
        "task finished: %s %s %s in %dms (attempt %d)%s",
        task.task_path,
        task.id,
        outcome,
        fields["duration_ms"],
        task.attempts,
        f": {error}" if error else "",
        extra=fields,
    )


def error_line(ending: Settlement) -> str:
    """The failed attempt's error in one line (``ValueError: boom``): the traceback's last
    line, as the result stores the whole of it."""
    if ending.error is None:
        return ""
    lines = [line for line in ending.error.traceback.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    return last or ending.error.exception_class_path


def recovered(supervisor: Supervisor, tasks: Sequence[Recovered]) -> None:
    """Count the expired leases ``supervisor`` recovered in one heartbeat. Never raises."""
    _supervisors.add(supervisor)
    try:
        for task in tasks:
            RECOVERED.labels(supervisor.backend.alias, task.status).inc()
    except Exception:
        logger.exception("could not record recovered leases")


def supervisors() -> list[Supervisor]:
    """The supervisors of this process that have reported (live ones only: weakly held)."""
    return list(_supervisors)


class PoolCollector(Collector):
    """Pool state of this process's supervisors, read at scrape time: workers busy, restarts."""

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "tandem_pool_restarts",
            "Pool workers replaced after a crash, a timeout or recycling, per pool.",
            labels=["backend", "pool", "worker_id"],
        )
        size = GaugeMetricFamily(
            "tandem_pool_workers", "Workers a pool runs.", labels=["backend", "pool", "worker_id"]
        )
        busy = GaugeMetricFamily(
            "tandem_pool_busy_workers",
            "Tasks a pool is running now.",
            labels=["backend", "pool", "worker_id"],
        )
        for supervisor in supervisors():
            for name, state in supervisor.pool_states().items():
                labels = [supervisor.backend.alias, name, supervisor.worker_id]
                restarts.add_metric(labels, float(_number(state.get("restarts"))))
                size.add_metric(labels, float(_number(state.get("workers"))))
                busy.add_metric(labels, float(_number(state.get("in_flight"))))
        yield restarts
        yield size
        yield busy


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


REGISTRY.register(PoolCollector())

__all__ = ["REGISTRY", "recovered", "settled", "supervisors"]

"""The health of one tandem backend, read from its broker: queues, pools, live workers, problems.

One ``Snapshot`` feeds ``tandem status``, the dashboard and the Prometheus gauges. It is built
from the broker contract only (``stats()`` and ``workers()``), so it works for every store.

A worker is *live* while its last heartbeat is younger than the backend's ``lease_seconds``
(supervisors beat every third of it). A snapshot's ``problems`` say, for a health probe, what is
wrong and what to do: a configured queue that no live worker serves, and — with ``max_age`` — a
queue whose oldest ready task has waited longer than that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.tasks import task_backends
from django.utils import timezone

from tandem.backends import tandem_backend
from tandem.backends.base import TandemBackend
from tandem.brokers.base import QueueStats, WorkerInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueHealth:
    name: str
    pool: str | None  # the pool of this configuration serving it (None: no pool)
    configured: bool  # named in the backend's QUEUES (or served by a pool when QUEUES is empty)
    ready: int
    running: int
    failed: int
    successful: int
    oldest_ready_at: datetime | None  # the oldest READY task already due (None: none is due)
    oldest_ready_age: float | None  # seconds it has waited
    live_workers: int  # live supervisors serving this queue
    paused_at: datetime | None = None  # when it was paused (None: not paused)

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateWait:
    """A rate limit whose window is full: its tasks wait READY until ``free_at``."""

    limit: str  # the limit key: ``task:<path>`` or ``pool:<queues>``
    kind: str  # "task" (a task's rate_limit) or "pool" (a pool's rate_limit option)
    name: str  # the task path, or the pool's queues (comma-separated)
    free_at: datetime  # when the next start fits
    wait: float  # seconds until then

    @property
    def label(self) -> str:
        what = f"task {self.name}" if self.kind == "task" else f"pool of queues {self.name}"
        return f"{what}: rate limited, next start in {self.wait:.1f}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerHealth:
    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    pools: dict[str, dict[str, Any]]
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_age: float  # seconds since its last heartbeat
    live: bool
    tasks_done: int

    @property
    def pool_list(self) -> list[dict[str, Any]]:
        """Its pools in order, each with its ``name`` and ``notes`` (see ``pool_notes``)."""
        return [
            {**pool, "name": name, "notes": pool_notes(pool)} for name, pool in self.pools.items()
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    backend: str
    taken_at: datetime
    lease_seconds: float
    max_age: float | None
    queues: tuple[QueueHealth, ...]
    workers: tuple[WorkerHealth, ...]
    problems: tuple[str, ...]
    #: Rate limits whose window is full (their tasks wait READY; none is dropped).
    rate_limited: tuple[RateWait, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def live_workers(self) -> tuple[WorkerHealth, ...]:
        return tuple(w for w in self.workers if w.live)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON types (datetimes as ISO 8601 strings), plus ``healthy``."""
        data = _jsonable(asdict(self))
        data["healthy"] = self.healthy
        return dict(data)


def tandem_aliases() -> list[str]:
    """The ``TASKS`` aliases that use a tandem backend, in settings order."""
    aliases = []
    for alias in task_backends.settings:
        try:
            tandem_backend(alias)
        except ImproperlyConfigured:
            continue
        aliases.append(alias)
    return aliases


def configured_queues(backend: TandemBackend) -> list[str]:
    """The queues a deployment of this backend must serve: ``QUEUES``, or every pool's."""
    if backend.queues:
        return sorted(backend.queues)
    return sorted({q for pool in backend.tandem_options.pools for q in pool.queues})


def take(
    alias: str = "default", *, max_age: float | None = None, now: datetime | None = None
) -> Snapshot:
    """Read the broker of ``TASKS[alias]`` once and judge what it shows."""
    backend = tandem_backend(alias)
    broker = backend.broker
    now = now or timezone.now()
    return build(
        backend,
        stats=broker.stats(),
        workers=broker.workers(),
        paused=broker.paused_queues(),
        max_age=max_age,
        now=now,
        rate_limited=broker.rate_limited(now),
    )


def build(
    backend: TandemBackend,
    *,
    stats: Sequence[QueueStats],
    workers: Sequence[WorkerInfo],
    max_age: float | None,
    now: datetime,
    paused: Mapping[str, datetime] | None = None,
    rate_limited: Mapping[str, datetime] | None = None,
) -> Snapshot:
    options = backend.tandem_options
    lease = options.lease_seconds
    silent_since = now - timedelta(seconds=lease)
    worker_health = tuple(
        WorkerHealth(
            id=w.id,
            hostname=w.hostname,
            pid=w.pid,
            queues=tuple(w.queues),
            pools=dict(w.pools),
            started_at=w.started_at,
            last_heartbeat_at=w.last_heartbeat_at,
            heartbeat_age=max(0.0, (now - w.last_heartbeat_at).total_seconds()),
            live=w.last_heartbeat_at >= silent_since,
            tasks_done=w.tasks_done,
        )
        for w in workers
    )
    by_queue = {s.queue_name: s for s in stats}
    configured = configured_queues(backend)
    paused = paused or {}
    names = [*configured, *sorted((set(by_queue) | set(paused)) - set(configured))]
    queues = []
    for name in names:
        counts = by_queue.get(name, QueueStats(queue_name=name))
        pool = options.pool_for_queue(name)
        oldest = counts.oldest_ready_at
        due = oldest if oldest is not None and oldest <= now else None
        queues.append(
            QueueHealth(
                name=name,
                pool=pool.name if pool else None,
                configured=name in configured,
                ready=counts.ready,
                running=counts.running,
                failed=counts.failed,
                successful=counts.successful,
                oldest_ready_at=due,
                oldest_ready_age=(now - due).total_seconds() if due else None,
                live_workers=sum(1 for w in worker_health if w.live and name in w.queues),
                paused_at=paused.get(name),
            )
        )
    return Snapshot(
        backend=backend.alias,
        taken_at=now,
        lease_seconds=lease,
        max_age=max_age,
        queues=tuple(queues),
        workers=worker_health,
        problems=tuple(_problems(queues, max_age, worker_health)),
        rate_limited=tuple(
            RateWait(
                limit=limit,
                kind=limit.partition(":")[0],
                name=limit.partition(":")[2],
                free_at=free_at,
                wait=max(0.0, (free_at - now).total_seconds()),
            )
            for limit, free_at in sorted((rate_limited or {}).items())
        ),
    )


def pool_notes(pool: dict[str, Any]) -> list[str]:
    """What a worker's pool (as registered) says beyond its size: the executor it was configured
    with when it runs on another, why, tasks run on a fallback, and workers that cannot start."""
    notes = []
    configured = pool.get("configured_executor")
    if configured and configured != pool.get("executor"):
        notes.append(
            f"runs on {pool.get('executor')} instead of {configured}: {pool.get('startup_error')}"
        )
    if pool.get("fallback"):
        notes.append(
            f"{pool.get('fallback_tasks', 0)} task(s) ran on its {pool['fallback']} fallback "
            "(their modules cannot load in a subinterpreter)"
        )
    if pool.get("failing"):
        notes.append(f"FAILING: its workers cannot start: {pool['failing']}")
    return notes


def _problems(
    queues: Sequence[QueueHealth], max_age: float | None, workers: Sequence[WorkerHealth] = ()
) -> list[str]:
    problems = []
    for worker in workers:
        for name, pool in worker.pools.items():
            if worker.live and pool.get("failing"):
                problems.append(
                    f"worker {worker.id}, pool {name!r}: its {pool.get('executor')} workers "
                    f"cannot start ({pool['failing']}); its tasks fail until they can."
                )
    for queue in queues:
        if queue.configured and not queue.live_workers:
            problems.append(
                f"queue {queue.name!r}: no live worker serves it ({queue.ready} ready). "
                f"Start one: python manage.py tandem worker -q {queue.name} "
                "(or tandem serve); a worker counts as live while it heartbeats within the lease."
            )
        age = queue.oldest_ready_age
        # A paused queue's tasks wait on purpose: not a problem of the workers.
        if max_age is not None and age is not None and age > max_age and not queue.paused:
            where = f"pool {queue.pool!r}" if queue.pool else "a pool"
            problems.append(
                f"queue {queue.name!r}: the oldest ready task has waited {age:.0f}s "
                f"(more than --max-age {max_age:g}s). Add workers to {where} or start more "
                f"workers for it: python manage.py tandem worker -q {queue.name}."
            )
    return problems


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


__all__ = [
    "QueueHealth",
    "RateWait",
    "Snapshot",
    "WorkerHealth",
    "build",
    "configured_queues",
    "pool_notes",
    "take",
    "tandem_aliases",
]

"""Typed, frozen settings for one ``TASKS`` alias, parsed once with exact error messages.

Every error names the full settings key, e.g.
``TASKS['default']['OPTIONS']['pools']['critical']['workers'] must be an integer >= 1, got 'x'.``

The parts: ``conf.defaults`` (defaults and allowed keys), ``conf.reader`` (typed reads that name
the key), ``conf.schedules`` (cron schedules, retention), ``conf.redis_options`` (the Redis
store's keys). Every name other modules use is importable from ``tandem.conf``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from tandem.conf.defaults import (
    AUTO_PREFETCH_PER_WORKER,
    CATCH_UP,
    DEFAULT_ASYNC_CONCURRENCY,
    DEFAULT_BACKOFF,
    DEFAULT_EXECUTOR,
    DEFAULT_IDLE_CLOSE,
    DEFAULT_IDLE_KEEP,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RECOVERY_MAX_ATTEMPTS,
    DEFAULT_STARVATION_LIMIT,
    EXECUTORS,
    MAX_SCHEDULE_NAME,
    OPTION_KEYS,
    POOL_KEYS,
    PREFETCH_WINDOW,
    RETENTION_KEYS,
    SCHEDULE_KEYS,
    SUBINTERPRETERS_AVAILABLE,
    default_workers,
)
from tandem.conf.reader import SettingsReader, unknown_keys
from tandem.conf.redis_options import (
    DEFAULT_REDIS_PREFIX,
    DEFAULT_REDIS_URL,
    DEFAULT_RESULT_TTL,
    REDIS_OPTION_KEYS,
    REDIS_SCHEMES,
    RedisOptions,
    masked_url,
    parse_redis_options,
)
from tandem.conf.schedules import (
    RetentionConfig,
    ScheduleConfig,
    parse_retention,
    parse_schedule,
    parse_schedules,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """One execution pool: the queues it serves and how it runs their tasks."""

    name: str
    queues: tuple[str, ...]
    workers: int
    executor: str
    poll_interval: float
    max_attempts: int
    backoff: float
    timeout: float | None = None
    max_tasks_per_worker: int | None = None
    #: Tasks claimed beyond ``workers``, waiting in the pool for a free worker: ``None`` (auto)
    #: buffers only while the pool's tasks are short (``PREFETCH_WINDOW`` of work per worker, at
    #: most ``AUTO_PREFETCH_PER_WORKER`` each); an int is a fixed maximum; 0 claims no more than
    #: the free workers.
    prefetch: int | None = None
    #: Seconds a READY task may wait before it is claimed ahead of younger tasks, whatever their
    #: priority (so a steady stream of high-priority work never starves a low-priority task).
    starvation_limit: float = 300.0
    #: ``async def`` tasks in flight at once on each worker's event loop (beside its sync slot).
    async_concurrency: int = DEFAULT_ASYNC_CONCURRENCY
    #: ``"N/s"``, ``"N/m"`` or ``"N/h"``: at most N starts of the pool's tasks (every task of its
    #: queues) in any window of that length, across every worker; None: no pool rate.
    rate_limit: str | None = None
    #: Subinterpreter pools: seconds a worker interpreter beyond the last idle one may stay idle
    #: before it is closed (each holds Django set up, about 30 MiB); interpreters start on
    #: demand. None: every worker's interpreter starts with the pool and stays.
    idle_close: float | None = DEFAULT_IDLE_CLOSE
    #: Subinterpreter pools with ``idle_close``: interpreters an idle pool keeps ready. 1: a task
    #: arriving at an idle pool starts at once; 0: it waits for an interpreter to set Django up
    #: (about 0.2 s), and an idle ``tandem serve`` holds no worker interpreter (about 30 MiB less).
    idle_keep: int = DEFAULT_IDLE_KEEP


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendOptions:
    """The parsed ``OPTIONS`` of one task backend alias."""

    alias: str
    executor: str
    lease_seconds: float
    poll_interval: float
    recovery_max_attempts: int
    pools: tuple[PoolConfig, ...]
    schedules: tuple[ScheduleConfig, ...] = ()
    run_schedules: bool = True
    retention: RetentionConfig = RetentionConfig()  # noqa: RUF009 — frozen: safe to share
    #: Bytes of JSON the arguments of one task may take (None: no limit).
    max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES
    #: SQLite's ``synchronous`` on the supervisor's own connection (claims, settlements, leases):
    #: ``NORMAL`` skips the fsync per commit, ``None`` keeps what DATABASES configures.
    sqlite_worker_synchronous: str | None = "NORMAL"

    @property
    def heartbeat_interval(self) -> float:
        return self.lease_seconds / 3

    def pool_for_queue(self, queue_name: str) -> PoolConfig | None:
        for pool in self.pools:
            if queue_name in pool.queues:
                return pool
        return None


def parse_options(
    alias: str,
    params: Mapping[str, Any],
    queues: frozenset[str],
    subinterpreter_blocker: str | None = None,
    extra_keys: frozenset[str] = frozenset(),
) -> BackendOptions:
    """Parse ``TASKS[alias]["OPTIONS"]``; raise ImproperlyConfigured naming the bad key.

    ``subinterpreter_blocker``: why subinterpreters cannot serve this backend (e.g. its database
    driver does not load in one); the default executor is then ``thread``, and an explicit
    ``"subinterpreter"`` is an error that says why.

    ``extra_keys``: the keys of the backend's own store (e.g. ``REDIS_OPTION_KEYS``), accepted
    here and parsed by the backend; any other key not in ``OPTION_KEYS`` is an error.
    """
    prefix = f"TASKS[{alias!r}]['OPTIONS']"
    reader = SettingsReader(params.get("OPTIONS", {}) or {}, prefix, OPTION_KEYS | extra_keys)
    default = "thread" if subinterpreter_blocker else DEFAULT_EXECUTOR
    executor = reader.executor(default, subinterpreter_blocker)
    poll_interval = reader.number("poll_interval", DEFAULT_POLL_INTERVAL)
    workers = reader.integer("workers", default_workers(), 1)
    raw_pools = reader.mapping.get("pools")
    if raw_pools is None:
        # QUEUES = [] means "any queue name"; the default pool then serves "default".
        raw_pools = {"default": {"queues": sorted(queues) or ["default"]}}
    if not isinstance(raw_pools, Mapping) or not raw_pools:
        raise ImproperlyConfigured(
            f"{reader.key('pools')} must be a non-empty dict of pool name -> pool settings, "
            f"got {raw_pools!r}."
        )
    pools = []
    served: dict[str, str] = {}
    for name, raw in raw_pools.items():
        pool_reader = SettingsReader(raw, f"{reader.key('pools')}[{name!r}]", POOL_KEYS)
        pool_queues = pool_reader.mapping.get("queues", [name])
        if (
            isinstance(pool_queues, str)
            or not isinstance(pool_queues, list | tuple)
            or not pool_queues
            or not all(isinstance(q, str) for q in pool_queues)
        ):
            raise ImproperlyConfigured(
                f"{pool_reader.key('queues')} must be a non-empty list of queue names, "
                f"got {pool_queues!r}."
            )
        for queue in pool_queues:
            if queues and queue not in queues:
                raise ImproperlyConfigured(
                    f"{pool_reader.key('queues')} names queue {queue!r}, which is not in "
                    f"TASKS[{alias!r}]['QUEUES'] ({', '.join(sorted(queues))})."
                )
            if queue in served:
                raise ImproperlyConfigured(
                    f"{pool_reader.key('queues')}: queue {queue!r} is already served by pool "
                    f"{served[queue]!r}; each queue belongs to exactly one pool."
                )
            served[queue] = str(name)
        pool_executor = pool_reader.executor(executor, subinterpreter_blocker)
        max_tasks_per_worker = pool_reader.optional_integer("max_tasks_per_worker", 1)
        if max_tasks_per_worker is not None and pool_executor != "process":
            raise ImproperlyConfigured(
                f"{pool_reader.key('max_tasks_per_worker')} recycles worker processes; it needs "
                f"'executor': 'process' in that pool (it uses {pool_executor!r})."
            )
        pools.append(
            PoolConfig(
                name=str(name),
                queues=tuple(pool_queues),
                workers=pool_reader.integer("workers", workers, 1),
                executor=pool_executor,
                timeout=pool_reader.optional_number("timeout"),
                max_tasks_per_worker=max_tasks_per_worker,
                prefetch=pool_reader.optional_integer("prefetch", 0),
                poll_interval=pool_reader.number("poll_interval", poll_interval),
                max_attempts=pool_reader.integer("max_attempts", DEFAULT_MAX_ATTEMPTS, 1),
                backoff=pool_reader.number("backoff", DEFAULT_BACKOFF),
                starvation_limit=pool_reader.number("starvation_limit", DEFAULT_STARVATION_LIMIT),
                async_concurrency=pool_reader.integer(
                    "async_concurrency", DEFAULT_ASYNC_CONCURRENCY, 1
                ),
                rate_limit=pool_reader.rate("rate_limit"),
                idle_close=(
                    pool_reader.optional_number("idle_close")
                    if "idle_close" in pool_reader.mapping
                    else DEFAULT_IDLE_CLOSE
                ),
                idle_keep=pool_reader.integer("idle_keep", DEFAULT_IDLE_KEEP, 0),
            )
        )
    return BackendOptions(
        alias=alias,
        executor=executor,
        lease_seconds=reader.number("lease_seconds", DEFAULT_LEASE_SECONDS),
        poll_interval=poll_interval,
        recovery_max_attempts=reader.integer(
            "recovery_max_attempts", DEFAULT_RECOVERY_MAX_ATTEMPTS, 1
        ),
        pools=tuple(pools),
        schedules=parse_schedules(alias, reader),
        run_schedules=reader.flag("run_schedules", True),
        retention=parse_retention(reader),
        max_payload_bytes=_max_payload_bytes(reader),
        sqlite_worker_synchronous=_sqlite_worker_synchronous(reader),
    )


SQLITE_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")


def _sqlite_worker_synchronous(reader: SettingsReader) -> str | None:
    name = "sqlite_worker_synchronous"
    value = reader.mapping.get(name, "NORMAL")
    if value is not None and value not in SQLITE_SYNCHRONOUS:
        raise ImproperlyConfigured(
            f"{reader.key(name)} must be one of {', '.join(map(repr, SQLITE_SYNCHRONOUS))}, or "
            f"None to keep the connection's own setting, got {value!r}."
        )
    return str(value) if value is not None else None


def _max_payload_bytes(reader: SettingsReader) -> int | None:
    if "max_payload_bytes" in reader.mapping and reader.mapping["max_payload_bytes"] is None:
        return None
    value = reader.mapping.get("max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            f"{reader.key('max_payload_bytes')} must be an integer >= 1 (bytes of JSON a "
            f"task's arguments may take), or None for no limit, got {value!r}."
        )
    return value


__all__ = [
    "AUTO_PREFETCH_PER_WORKER",
    "CATCH_UP",
    "DEFAULT_ASYNC_CONCURRENCY",
    "DEFAULT_BACKOFF",
    "DEFAULT_EXECUTOR",
    "DEFAULT_IDLE_CLOSE",
    "DEFAULT_IDLE_KEEP",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_RECOVERY_MAX_ATTEMPTS",
    "DEFAULT_REDIS_PREFIX",
    "DEFAULT_REDIS_URL",
    "DEFAULT_RESULT_TTL",
    "DEFAULT_STARVATION_LIMIT",
    "EXECUTORS",
    "MAX_SCHEDULE_NAME",
    "OPTION_KEYS",
    "POOL_KEYS",
    "PREFETCH_WINDOW",
    "REDIS_OPTION_KEYS",
    "REDIS_SCHEMES",
    "RETENTION_KEYS",
    "SCHEDULE_KEYS",
    "SQLITE_SYNCHRONOUS",
    "SUBINTERPRETERS_AVAILABLE",
    "BackendOptions",
    "PoolConfig",
    "RedisOptions",
    "RetentionConfig",
    "ScheduleConfig",
    "default_workers",
    "masked_url",
    "parse_options",
    "parse_redis_options",
    "parse_schedule",
    "unknown_keys",
]

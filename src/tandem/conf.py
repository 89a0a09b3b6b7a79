"""Typed, frozen settings for one ``TASKS`` alias, parsed once with exact error messages.

Every error names the full settings key, e.g.
``TASKS['default']['OPTIONS']['pools']['critical']['workers'] must be an integer >= 1, got 'x'.``
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from django.core.exceptions import ImproperlyConfigured

from tandem.rates import InvalidRate
from tandem.rates import normalize as normalize_rate
from tandem.scheduler.cron import Cron, CronError, zone_named
from tandem.serialization import NotJSONError, to_json

EXECUTORS = ("subinterpreter", "thread", "process")
SUBINTERPRETERS_AVAILABLE = sys.version_info >= (3, 14)
# The best available: subinterpreters (parallel, isolated) on 3.14+, threads before.
DEFAULT_EXECUTOR = "subinterpreter" if SUBINTERPRETERS_AVAILABLE else "thread"
DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_MAX_ATTEMPTS = 1
DEFAULT_BACKOFF = 2.0
#: Seconds a READY task waits before it is claimed ahead of younger ones (pool option).
DEFAULT_STARVATION_LIMIT = 300.0
#: Automatic prefetch (a pool's ``"prefetch": None``): claim ahead only as many tasks as the pool's
#: workers finish in this many seconds at their recent pace, and at most this many per worker.
PREFETCH_WINDOW = 0.025
AUTO_PREFETCH_PER_WORKER = 16
DEFAULT_RECOVERY_MAX_ATTEMPTS = 3
#: Coroutines (``async def`` tasks) in flight at once on one worker's event loop.
DEFAULT_ASYNC_CONCURRENCY = 100
#: The largest arguments (args + kwargs, as stored JSON) ``enqueue()`` accepts: 1 MiB.
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

OPTION_KEYS = frozenset(
    {
        "executor",
        "workers",
        "pools",
        "lease_seconds",
        "poll_interval",
        "recovery_max_attempts",
        "schedule",
        "run_schedules",
        "retention",
        "max_payload_bytes",
        "sqlite_worker_synchronous",
    }
)
POOL_KEYS = frozenset(
    {
        "queues",
        "workers",
        "executor",
        "poll_interval",
        "max_attempts",
        "backoff",
        "timeout",
        "max_tasks_per_worker",
        "prefetch",
        "starvation_limit",
        "async_concurrency",
        "rate_limit",
    }
)
SCHEDULE_KEYS = frozenset({"task", "cron", "args", "kwargs", "timezone", "catch_up"})
CATCH_UP = ("one", "none", "all")
#: ``ScheduleTick.name`` holds this many characters.
MAX_SCHEDULE_NAME = 100
RETENTION_KEYS = frozenset({"successful", "failed"})


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleConfig:
    """One cron schedule: enqueue ``task`` with ``args``/``kwargs`` at every tick of ``cron``."""

    name: str
    backend: str
    task: str  # the task's dotted path; resolved by the system check, not here (import cycles)
    cron: Cron
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    timezone: str | None = None  # None: settings.TIME_ZONE
    catch_up: str = "one"
    #: Where it was defined, for messages: a settings key or ``tandem.schedule() on …``.
    source: str = ""

    @property
    def zone(self) -> ZoneInfo:
        from django.conf import settings

        return zone_named(self.timezone or settings.TIME_ZONE or "UTC")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionConfig:
    """Seconds finished tasks are kept before supervisors delete them (None: kept)."""

    successful: float | None = None
    failed: float | None = None

    @property
    def enabled(self) -> bool:
        return self.successful is not None or self.failed is not None


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
    retention: RetentionConfig = RetentionConfig()
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


def unknown_keys(unknown: list[Any], allowed: frozenset[str]) -> list[str]:
    """Each unknown key quoted, with the allowed key it is probably a typo of:
    ``'wrokers' (did you mean 'workers'?)``."""
    shown = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if not close:
            close = [name for name in allowed if name.lower() == str(key).lower()]
        shown.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return shown


class _Reader:
    """Reads typed values out of a settings mapping, naming the full key on error."""

    def __init__(self, mapping: Mapping[str, Any], prefix: str, allowed: frozenset[str]) -> None:
        if not isinstance(mapping, Mapping):
            raise ImproperlyConfigured(f"{prefix} must be a dict, got {mapping!r}.")
        unknown = sorted(set(mapping) - allowed, key=str)
        if unknown:
            raise ImproperlyConfigured(
                f"{prefix} has unknown key(s) {', '.join(unknown_keys(unknown, allowed))}; "
                f"allowed: {', '.join(sorted(allowed))}."
            )
        self.mapping = mapping
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}[{name!r}]"

    def integer(self, name: str, default: int, minimum: int) -> int:
        value = self.mapping.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ImproperlyConfigured(
                f"{self.key(name)} must be an integer >= {minimum}, got {value!r}."
            )
        return value

    def number(self, name: str, default: float) -> float:
        value = self.mapping.get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ImproperlyConfigured(
                f"{self.key(name)} must be a finite number > 0, got {value!r}."
            )
        return float(value)

    def rate(self, name: str) -> str | None:
        """A rate string (``"N/s"``, ``"N/m"``, ``"N/h"``), normalized; None when unset."""
        value = self.mapping.get(name)
        if value is None:
            return None
        try:
            return normalize_rate(value)
        except InvalidRate as exc:
            raise ImproperlyConfigured(f"{self.key(name)} {exc}") from None

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.mapping.get(name, default)
        if value not in choices:
            raise ImproperlyConfigured(
                f"{self.key(name)} must be one of {', '.join(map(repr, choices))}, got {value!r}."
            )
        return str(value)

    def executor(self, default: str, blocker: str | None = None) -> str:
        value = self.choice("executor", default, EXECUTORS)
        if value == "subinterpreter" and blocker and "executor" in self.mapping:
            raise ImproperlyConfigured(
                f"{self.key('executor')} is 'subinterpreter', but {blocker}; use 'thread' or "
                "'process' (or leave it unset)."
            )
        if value == "subinterpreter" and not SUBINTERPRETERS_AVAILABLE:
            raise ImproperlyConfigured(
                f"{self.key('executor')} is 'subinterpreter', which needs Python >= 3.14 (this "
                f"is {sys.version.split()[0]}); use 'thread' or 'process', or leave it unset to "
                "get the best available."
            )
        return value

    def optional_number(self, name: str) -> float | None:
        if self.mapping.get(name) is None:
            return None
        return self.number(name, 0)

    def optional_integer(self, name: str, minimum: int) -> int | None:
        if self.mapping.get(name) is None:
            return None
        return self.integer(name, minimum, minimum)

    def text(self, name: str, default: str) -> str:
        value = self.mapping.get(name, default)
        if not isinstance(value, str) or not value:
            raise ImproperlyConfigured(
                f"{self.key(name)} must be a non-empty string, got {value!r}."
            )
        return value

    def optional_text(self, name: str) -> str | None:
        if self.mapping.get(name) is None:
            return None
        return self.text(name, "")

    def flag(self, name: str, default: bool) -> bool:
        value = self.mapping.get(name, default)
        if not isinstance(value, bool):
            raise ImproperlyConfigured(f"{self.key(name)} must be True or False, got {value!r}.")
        return value


def default_workers() -> int:
    return max(2, min(8, (os.cpu_count() or 1) * 2))


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
    reader = _Reader(params.get("OPTIONS", {}) or {}, prefix, OPTION_KEYS | extra_keys)
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
        pool_reader = _Reader(raw, f"{reader.key('pools')}[{name!r}]", POOL_KEYS)
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
        schedules=_schedules(alias, reader),
        run_schedules=reader.flag("run_schedules", True),
        retention=_retention(reader),
        max_payload_bytes=_max_payload_bytes(reader),
        sqlite_worker_synchronous=_sqlite_worker_synchronous(reader),
    )


SQLITE_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")


def _sqlite_worker_synchronous(reader: _Reader) -> str | None:
    name = "sqlite_worker_synchronous"
    value = reader.mapping.get(name, "NORMAL")
    if value is not None and value not in SQLITE_SYNCHRONOUS:
        raise ImproperlyConfigured(
            f"{reader.key(name)} must be one of {', '.join(map(repr, SQLITE_SYNCHRONOUS))}, or "
            f"None to keep the connection's own setting, got {value!r}."
        )
    return str(value) if value is not None else None


def _max_payload_bytes(reader: _Reader) -> int | None:
    if "max_payload_bytes" in reader.mapping and reader.mapping["max_payload_bytes"] is None:
        return None
    value = reader.mapping.get("max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            f"{reader.key('max_payload_bytes')} must be an integer >= 1 (bytes of JSON a "
            f"task's arguments may take), or None for no limit, got {value!r}."
        )
    return value


# -- schedules and retention -----------------------------------------------------------------------


def _schedules(alias: str, reader: _Reader) -> tuple[ScheduleConfig, ...]:
    raw = reader.mapping.get("schedule")
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"{reader.key('schedule')} must be a dict of schedule name -> schedule settings "
            f"({{'task': ..., 'cron': ...}}), got {raw!r}."
        )
    schedules = []
    for name, values in raw.items():
        if not isinstance(name, str) or not name or len(name) > MAX_SCHEDULE_NAME:
            raise ImproperlyConfigured(
                f"{reader.key('schedule')} has a schedule named {name!r}; a schedule name must "
                f"be a non-empty string of at most {MAX_SCHEDULE_NAME} characters."
            )
        entry = _Reader(values, f"{reader.key('schedule')}[{name!r}]", SCHEDULE_KEYS)
        schedules.append(
            parse_schedule(
                entry.mapping, name=name, backend=alias, key=entry.key, source=entry.prefix
            )
        )
    return tuple(schedules)


def parse_schedule(
    values: Mapping[str, Any],
    *,
    name: str,
    backend: str,
    key: Callable[[str], str],
    source: str,
) -> ScheduleConfig:
    """One schedule from ``values`` (the keys of ``SCHEDULE_KEYS``); ``key(field)`` names a field
    in error messages. The task path is checked by the system check (tandem.E010), not here."""
    task = values.get("task")
    parts = task.split(".") if isinstance(task, str) else []
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise ImproperlyConfigured(
            f"{key('task')} must be the dotted path of a task, such as "
            f"'reports.tasks.nightly', got {task!r}."
        )
    try:
        cron = Cron.parse(values.get("cron"))
    except CronError as exc:
        raise ImproperlyConfigured(f"{key('cron')} = {values.get('cron')!r} {exc}.") from None
    args = values.get("args", ())
    if isinstance(args, str) or not isinstance(args, list | tuple):
        raise ImproperlyConfigured(f"{key('args')} must be a list of arguments, got {args!r}.")
    kwargs = values.get("kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ImproperlyConfigured(
            f"{key('kwargs')} must be a dict of keyword arguments (str keys), got {kwargs!r}."
        )
    try:
        json_args = to_json(list(args), key("args"))
        json_kwargs = to_json(dict(kwargs), key("kwargs"))
    except NotJSONError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    timezone = values.get("timezone")
    if timezone is not None:
        try:
            zone_named(timezone)
        except CronError as exc:
            raise ImproperlyConfigured(f"{key('timezone')} = {timezone!r} {exc}.") from None
    catch_up = values.get("catch_up", "one")
    if catch_up not in CATCH_UP:
        raise ImproperlyConfigured(
            f"{key('catch_up')} must be one of {', '.join(map(repr, CATCH_UP))}, got {catch_up!r}."
        )
    return ScheduleConfig(
        name=name,
        backend=backend,
        task=".".join(parts),
        cron=cron,
        args=tuple(json_args),
        kwargs=MappingProxyType(json_kwargs),
        timezone=timezone,
        catch_up=str(catch_up),
        source=source,
    )


def _retention(reader: _Reader) -> RetentionConfig:
    raw = reader.mapping.get("retention")
    if raw is None:
        return RetentionConfig()
    entry = _Reader(raw, reader.key("retention"), RETENTION_KEYS)
    kept: dict[str, float | None] = {}
    for status in sorted(RETENTION_KEYS):
        value = entry.mapping.get(status)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ImproperlyConfigured(
                f"{entry.key(status)} must be a number of seconds > 0 (how long finished tasks "
                f"are kept), or None to keep them, got {value!r}."
            )
        kept[status] = None if value is None else float(value)
    return RetentionConfig(successful=kept["successful"], failed=kept["failed"])


# -- the Redis store -------------------------------------------------------------------------------

#: ``OPTIONS`` keys of ``tandem.backends.redis.RedisBackend`` only.
#:
#: They are accepted for the Redis backend alone (``TandemBackend.extra_option_keys``), not for
#: every backend: a ``"url"`` in a DatabaseBackend's options would be silently ignored, and the
#: user who wrote it believes their tasks go to Redis. An unknown key stays an error everywhere.
REDIS_OPTION_KEYS = frozenset(
    {"url", "password", "prefix", "result_ttl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"}
)
REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_REDIS_PREFIX = "tandem"
DEFAULT_RESULT_TTL = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisOptions:
    """Where and how a Redis backend stores its tasks (the parsed Redis keys of ``OPTIONS``)."""

    url: str
    password: str | None = field(default=None, repr=False)
    prefix: str = DEFAULT_REDIS_PREFIX
    #: Seconds a finished task is kept (its Redis TTL); None keeps it until ``prune``.
    result_ttl: float | None = DEFAULT_RESULT_TTL
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def parse_redis_options(alias: str, params: Mapping[str, Any]) -> RedisOptions:
    """Parse the Redis keys of ``TASKS[alias]["OPTIONS"]``; errors name the key.

    The other keys are ``parse_options``'s; unknown keys are reported there.
    """
    raw = params.get("OPTIONS", {}) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS'] must be a dict, got {raw!r}.")
    mine = {k: v for k, v in raw.items() if k in REDIS_OPTION_KEYS}
    reader = _Reader(mine, f"TASKS[{alias!r}]['OPTIONS']", REDIS_OPTION_KEYS)
    url = reader.text("url", DEFAULT_REDIS_URL)
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ImproperlyConfigured(
            f"{reader.key('url')} must be a redis://, rediss:// or unix:// URL, "
            f"got {masked_url(url)!r}."
        )
    try:
        parts.port  # noqa: B018 — urlsplit checks the port when it is read
    except ValueError:
        raise ImproperlyConfigured(
            f"{reader.key('url')} has an invalid port: {masked_url(url)!r}."
        ) from None
    database = parts.path.strip("/") if parts.scheme != "unix" else ""
    if database and not database.isdigit():
        raise ImproperlyConfigured(
            f"{reader.key('url')} must name a database number after the host (e.g. "
            f"redis://127.0.0.1:6379/0), got {masked_url(url)!r}."
        )
    password = reader.optional_text("password")
    if password is not None and parts.password:
        raise ImproperlyConfigured(
            f"{reader.key('password')} is set and {reader.key('url')} has a password too; "
            "set it in one place."
        )
    tls = {
        name: reader.optional_text(name) for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
    }
    for name, value in tls.items():
        if value is not None and parts.scheme != "rediss":
            raise ImproperlyConfigured(
                f"{reader.key(name)} is a TLS setting; it needs a rediss:// URL in "
                f"{reader.key('url')}, got {masked_url(url)!r}."
            )
    result_ttl: float | None = DEFAULT_RESULT_TTL
    if "result_ttl" in mine:
        value = mine["result_ttl"]
        if value is None:
            result_ttl = None
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ImproperlyConfigured(
                f"{reader.key('result_ttl')} must be a finite number of seconds > 0, or None to "
                f"keep finished tasks until they are pruned, got {value!r}."
            )
        else:
            result_ttl = float(value)
    return RedisOptions(
        url=url,
        password=password,
        prefix=reader.text("prefix", DEFAULT_REDIS_PREFIX),
        result_ttl=result_ttl,
        ssl_ca_certs=tls["ssl_ca_certs"],
        ssl_certfile=tls["ssl_certfile"],
        ssl_keyfile=tls["ssl_keyfile"],
    )

"""Typed, frozen settings for one ``TASKS`` alias, parsed once with exact error messages.

Every error names the full settings key, e.g.
``TASKS['default']['OPTIONS']['pools']['critical']['workers'] must be an integer >= 1, got 'x'.``
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

EXECUTORS = ("subinterpreter", "thread", "process")
SUBINTERPRETERS_AVAILABLE = sys.version_info >= (3, 14)
# The best available: subinterpreters (parallel, isolated) on 3.14+, threads before.
DEFAULT_EXECUTOR = "subinterpreter" if SUBINTERPRETERS_AVAILABLE else "thread"
DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_MAX_ATTEMPTS = 1
DEFAULT_BACKOFF = 2.0
DEFAULT_RECOVERY_MAX_ATTEMPTS = 3

OPTION_KEYS = frozenset(
    {"executor", "workers", "pools", "lease_seconds", "poll_interval", "recovery_max_attempts"}
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
    }
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


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendOptions:
    """The parsed ``OPTIONS`` of one task backend alias."""

    alias: str
    executor: str
    lease_seconds: float
    poll_interval: float
    recovery_max_attempts: int
    pools: tuple[PoolConfig, ...]

    @property
    def heartbeat_interval(self) -> float:
        return self.lease_seconds / 3

    def pool_for_queue(self, queue_name: str) -> PoolConfig | None:
        for pool in self.pools:
            if queue_name in pool.queues:
                return pool
        return None


class _Reader:
    """Reads typed values out of a settings mapping, naming the full key on error."""

    def __init__(self, mapping: Mapping[str, Any], prefix: str, allowed: frozenset[str]) -> None:
        if not isinstance(mapping, Mapping):
            raise ImproperlyConfigured(f"{prefix} must be a dict, got {mapping!r}.")
        unknown = sorted(set(mapping) - allowed)
        if unknown:
            raise ImproperlyConfigured(
                f"{prefix} has unknown key(s) {', '.join(map(repr, unknown))}; "
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


def default_workers() -> int:
    return max(2, min(8, (os.cpu_count() or 1) * 2))


def parse_options(
    alias: str,
    params: Mapping[str, Any],
    queues: frozenset[str],
    subinterpreter_blocker: str | None = None,
) -> BackendOptions:
    """Parse ``TASKS[alias]["OPTIONS"]``; raise ImproperlyConfigured naming the bad key.

    ``subinterpreter_blocker``: why subinterpreters cannot serve this backend (e.g. its database
    driver does not load in one); the default executor is then ``thread``, and an explicit
    ``"subinterpreter"`` is an error that says why.
    """
    prefix = f"TASKS[{alias!r}]['OPTIONS']"
    reader = _Reader(params.get("OPTIONS", {}) or {}, prefix, OPTION_KEYS)
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
                poll_interval=pool_reader.number("poll_interval", poll_interval),
                max_attempts=pool_reader.integer("max_attempts", DEFAULT_MAX_ATTEMPTS, 1),
                backoff=pool_reader.number("backoff", DEFAULT_BACKOFF),
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
    )

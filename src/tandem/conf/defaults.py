"""The defaults of ``TASKS[alias]['OPTIONS']`` and the keys each part of it accepts."""

from __future__ import annotations

import os
import sys

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
#: Seconds a subinterpreter pool's extra worker interpreter may idle before it is closed.
DEFAULT_IDLE_CLOSE = 3.0
#: Subinterpreter pools: interpreters an idle pool keeps ready (``idle_keep``).
DEFAULT_IDLE_KEEP = 1
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
        "idle_close",
        "idle_keep",
    }
)
SCHEDULE_KEYS = frozenset({"task", "cron", "args", "kwargs", "timezone", "catch_up"})
CATCH_UP = ("one", "none", "all")
#: ``ScheduleTick.name`` holds this many characters.
MAX_SCHEDULE_NAME = 100
RETENTION_KEYS = frozenset({"successful", "failed"})


def default_workers() -> int:
    return max(2, min(8, (os.cpu_count() or 1) * 2))

"""The ``django.tasks`` backends that came with issue 22, each on ``contenders/sites/taskapi/``
(``BENCH_PEER`` picks the backend in its settings) and enqueued through Django's task API
(``contenders.django_enqueue``):

- ``vtasks-redis``, ``vtasks-postgres``: django-vtasks, asyncio worker (``runworker``),
  ``ValkeyTaskBackend`` on Redis db 9 or ``DatabaseTaskBackend`` on PostgreSQL;
- ``djqueue-sqlite``, ``djqueue-postgres``: dj_queue's supervisor (``manage.py dj_queue``);
- ``threadmill-redis``: threadmill's worker pool (``manage.py threadmill worker``);
- ``ox-sqlite``, ``ox-postgres``: django-ox (``manage.py ox_worker``).
"""

from __future__ import annotations

from contenders.base import DjangoSite, RunContext, pkg_versions

STORES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "redis": "Redis"}
SQLITE = "SQLite file (WAL, synchronous FULL)"
REDIS = "Redis db 9 (Django's own tables in SQLite)"


class TaskAPIPeer(DjangoSite):
    enqueue_module = "contenders.django_enqueue"
    peer = ""  # BENCH_PEER
    name = ""  # the label's peer name
    dists: tuple[str, ...] = ()
    bulk = ""  # BENCH_BULK (contenders.django_enqueue), "" when the peer has no bulk API
    task = "contenders.sites.taskapi.tasks.mark"

    def __init__(self, store: str, notes: str) -> None:
        self.store = store
        self.key = f"{self.peer}-{store}"
        self.label = f"{self.name}, {STORES[store]}"
        self.sqlite_file = f"{self.peer}.sqlite3"
        self.has_bulk = bool(self.bulk)
        self.notes = notes if store == "redis" else f"{notes}; CONN_MAX_AGE 600"

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {
            **super().env(ctx),
            "DJANGO_SETTINGS_MODULE": "contenders.sites.taskapi.settings",
            "BENCH_PEER": self.peer,
            "BENCH_TASK": self.task,
            "BENCH_BULK": self.bulk,
            "BENCH_DB": "postgres" if self.store == "postgres" else "sqlite",
            "BENCH_SQLITE_PATH": str(ctx.tmp / self.sqlite_file),
            "BENCH_PG_NAME": self.pg_name(ctx),
            "BENCH_REDIS_URL": ctx.redis_url,
            "BENCH_SLOTS": str(ctx.slots),
        }

    def versions(self) -> dict[str, str]:
        extra = {"postgres": ["psycopg"], "redis": ["redis"]}.get(self.store, [])
        return pkg_versions(*self.dists, "django", *extra)


class VTasks(TaskAPIPeer):
    peer, name = "vtasks", "django-vtasks"
    dists = ("django-vtasks", "django-vcache")
    bulk = "enqueue_many"
    task = "contenders.sites.taskapi.vtasks_tasks.mark"

    def worker_argv(self, ctx: RunContext) -> list[str]:
        return [ctx.python, "-m", "django", "runworker", "--concurrency", str(ctx.slots)]

    def versions(self) -> dict[str, str]:
        versions = super().versions()
        if self.store == "redis":
            versions.pop("redis", None)  # it talks to Redis through django-vcache's Rust driver
        return versions


class DjQueue(TaskAPIPeer):
    peer, name = "djqueue", "dj_queue"
    dists = ("dj-queue",)
    bulk = "enqueue_all"

    def worker_argv(self, ctx: RunContext) -> list[str]:
        return [ctx.python, "-m", "django", "dj_queue"]


class Threadmill(TaskAPIPeer):
    peer, name = "threadmill", "threadmill"
    dists = ("threadmill",)

    def worker_argv(self, ctx: RunContext) -> list[str]:
        slots = str(ctx.slots)
        return [ctx.python, "-m", "django", "threadmill", "worker", "-w", slots, "-t", "1"]


class Ox(TaskAPIPeer):
    peer, name = "ox", "django-ox"
    dists = ("django-ox",)
    bulk = "ox"

    def worker_argv(self, ctx: RunContext) -> list[str]:
        # -v 0: at its default verbosity ox_worker logs one INFO line per task to stderr
        slots = str(ctx.slots)
        return [ctx.python, "-m", "django", "ox_worker", "--concurrency", slots, "-v", "0"]


CONTENDERS = [
    VTasks(
        "redis",
        "`runworker --concurrency {slots}` (one process, asyncio; a sync task runs in a thread "
        "via asyncio.to_thread; default concurrency 20), ValkeyTaskBackend (BROKER_URL on "
        f"Redis db 9, blocking dequeue, 1 s timeout); {REDIS}; "
        "`django_vtasks.task`; bulk = backend.enqueue_many",
    ),
    VTasks(
        "postgres",
        "`runworker --concurrency {slots}` (one process, asyncio; a sync task runs in a thread), "
        "DatabaseTaskBackend (SELECT ... FOR UPDATE SKIP LOCKED, polls an empty queue every "
        "0.1 s doubling to 1 s; finished rows deleted); PostgreSQL; `django_vtasks.task`; bulk = "
        "backend.enqueue_many",
    ),
    DjQueue(
        "sqlite",
        "`manage.py dj_queue` (fork mode, default: supervisor + 1 worker process with {slots} "
        "threads (default 3) + dispatcher), polls every 0.1 s (default; no wake-up on SQLite), "
        f"finished jobs kept (default); {SQLITE}; bulk = backend.enqueue_all",
    ),
    DjQueue(
        "postgres",
        "`manage.py dj_queue` (fork mode, default: supervisor + 1 worker process with {slots} "
        "threads (default 3) + dispatcher), LISTEN/NOTIFY wake-up on top of 0.1 s polling "
        "(defaults), finished jobs kept (default); PostgreSQL; bulk = backend.enqueue_all",
    ),
    Threadmill(
        "redis",
        "`manage.py threadmill worker -w {slots} -t 1` ({slots} worker processes of 1 thread under "
        "its gunicorn-like arbiter; default: CPU count - 1 processes of 1 thread), prefetch "
        "4 x threads, idle poll 0.01 s doubling to 1 s (defaults), results kept 1 day "
        "(default), logger django.tasks at WARNING (at INFO it logs 2 JSON lines per task); "
        f"RedisTaskBackend on {REDIS}; no bulk API",
    ),
    Ox(
        "sqlite",
        "`manage.py ox_worker --concurrency {slots}` (one process, a thread pool of {slots}; "
        "default 1), -v 0 (its default logs a line per task), polls an empty queue every 1 s "
        "(default `--interval`), claims with an "
        f"atomic compare-and-set UPDATE on SQLite; {SQLITE}; bulk = django_ox.bulk.enqueue_many",
    ),
    Ox(
        "postgres",
        "`manage.py ox_worker --concurrency {slots}` (one process, a thread pool of {slots}; "
        "default 1), -v 0 (its default logs a line per task), polls an empty queue every 1 s "
        "(default `--interval`), SELECT ... FOR UPDATE SKIP LOCKED; PostgreSQL; "
        "bulk = django_ox.bulk.enqueue_many",
    ),
]

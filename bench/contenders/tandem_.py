"""tandem's contenders, on ``bench/benchsite`` (its ``mark`` task):

- ``tandem-serve-sqlite``: ``tandem serve -w SLOTS`` (HTTP server and workers in one process); its
  pickup is measured twice: from a separate process (as for every contender) and from a view
  inside serve (``GET /enqueue/?stamp=``, stamped in the view), the way a serve deployment
  enqueues;
- ``tandem-worker-{sqlite,postgres,redis}``: ``tandem worker -w SLOTS``.

tandem's own defaults otherwise (executor, poll interval, wake-ups).
"""

from __future__ import annotations

import socket

from contenders.base import DjangoSite, RunContext, pkg_versions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Tandem(DjangoSite):
    enqueue_module = "contenders.django_enqueue"
    sqlite_file = "tandem.sqlite3"
    has_bulk = True  # tandem.enqueue_many

    def __init__(self, mode: str, store: str, executor: str | None = None) -> None:
        self.mode, self.store, self.executor = mode, store, executor
        self.has_view_pickup = mode == "serve"
        self.key = f"tandem-{mode}-{store}" + (f"-{executor}s" if executor else "")
        names = {"sqlite": "SQLite", "postgres": "PostgreSQL", "redis": "Redis"}
        self.label = f"tandem {mode}" + (f" ({executor}s)" if executor else "")
        self.label += f", {names[store]}"
        self.port = 0
        pools = f"{executor} executor" if executor else "default executor: subinterpreters"
        where = {
            "sqlite": "SQLite file (WAL; enqueue commits with synchronous FULL, the supervisor's "
            "own connection NORMAL: `sqlite_worker_synchronous`)",
            "postgres": "PostgreSQL database",
            "redis": "RedisBackend on db 9 (Django tables in SQLite)",
        }[store]
        if mode == "serve":
            self.notes = (
                f"`tandem serve -w {{slots}}` (web + {{slots}} workers in one process, {pools}); "
                f"{where}; pickup from another process, and from a view in serve (HTTP GET "
                "/enqueue/, stamped in the view just before enqueue()); CONN_MAX_AGE 600"
            )
        else:
            self.notes = f"`tandem worker -w {{slots}}` ({pools}); {where}"

    def env(self, ctx: RunContext) -> dict[str, str]:
        env = {
            **super().env(ctx),
            "DJANGO_SETTINGS_MODULE": "benchsite.settings",
            "BENCH_TASK": "benchsite.tasks.mark",
            "BENCH_BULK": "tandem",
            "BENCH_DB": "postgres" if self.store == "postgres" else "sqlite",
            "BENCH_SQLITE_PATH": str(ctx.tmp / self.sqlite_file),
            "BENCH_PG_NAME": self.pg_name(ctx),
            "BENCH_HTTP_PORT": str(self.port),
        }
        if self.executor:
            env["BENCH_EXECUTOR"] = self.executor
        if self.store == "redis":
            env |= {
                "BENCH_STORE": "redis",
                "BENCH_REDIS_URL": ctx.redis_url,
                "BENCH_REDIS_PREFIX": f"tandem-cmp-{ctx.rep}",
            }
        return env

    def worker_argv(self, ctx: RunContext) -> list[str]:
        if self.mode == "serve":
            self.port = free_port()
            bind = f"127.0.0.1:{self.port}"
            slots = str(ctx.slots)
            return [ctx.python, "-m", "django", "tandem", "serve", "--bind", bind, "-w", slots]
        return [ctx.python, "-m", "django", "tandem", "worker", "-w", str(ctx.slots)]

    def view_pickup_argv(self, ctx: RunContext, n: int, interval: float) -> list[str] | None:
        if self.mode == "serve":
            return [ctx.python, "-m", "contenders.http_enqueue", "paced", str(n), str(interval)]
        return None

    def versions(self) -> dict[str, str]:
        extra = {"postgres": ["psycopg"], "redis": ["redis"]}.get(self.store, [])
        return pkg_versions("django-tandem", "django", *extra)


CONTENDERS = [
    Tandem("serve", "sqlite"),
    Tandem("serve", "sqlite", executor="thread"),
    Tandem("worker", "sqlite"),
    Tandem("worker", "postgres"),
    Tandem("worker", "redis"),
]

"""django-tasks-db (PyPI ``django-tasks-db``), Django's task API on the ORM: ``tasksdb-sqlite``,
``tasksdb-postgres``. Project: ``contenders/sites/tasksdb/``; worker: its ``db_worker`` command.
"""

from __future__ import annotations

from contenders.base import DjangoSite, RunContext, pkg_versions


class TasksDB(DjangoSite):
    enqueue_module = "contenders.django_enqueue"
    sqlite_file = "tasksdb.sqlite3"
    has_bulk = False  # Django's task API has no bulk enqueue, nor has django-tasks-db

    def __init__(self, store: str) -> None:
        self.store = store
        self.key = f"tasksdb-{store}"
        self.label = f"django-tasks-db, {'SQLite' if store == 'sqlite' else 'PostgreSQL'}"
        where = "SQLite file (WAL, synchronous FULL)" if store == "sqlite" else "PostgreSQL"
        self.notes = (
            "{slots} x `db_worker` (one process running one task at a time each, under a small "
            "stdlib launcher: it has no concurrency option, so more slots are more processes), "
            "default "
            "poll interval (1 s when the queue is empty, none between tasks), "
            f"--no-startup-delay; {where}"
        )

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {
            **super().env(ctx),
            "DJANGO_SETTINGS_MODULE": "contenders.sites.tasksdb.settings",
            "BENCH_TASK": "contenders.sites.tasksdb.tasks.mark",
            "BENCH_DB": self.store,
            "BENCH_SQLITE_PATH": str(ctx.tmp / self.sqlite_file),
            "BENCH_PG_NAME": self.pg_name(ctx),
        }

    def worker_argv(self, ctx: RunContext) -> list[str]:
        # --no-startup-delay: skip the random 0-1 s sleep meant to spread many workers' starts
        worker = ["-m", "django", "db_worker", "--no-startup-delay", "--no-reload"]
        if ctx.slots == 1:
            return [ctx.python, *worker]
        return [ctx.python, "-m", "contenders.sites.replicas", str(ctx.slots), *worker]

    def versions(self) -> dict[str, str]:
        extra = ["psycopg"] if self.store == "postgres" else []
        return pkg_versions("django-tasks-db", "django", *extra)


CONTENDERS = [TasksDB("sqlite"), TasksDB("postgres")]

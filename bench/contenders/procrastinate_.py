"""``procrastinate-postgres``: procrastinate on its own PostgreSQL database (schema applied with
``procrastinate schema --apply``). App: ``contenders/sites/procrastinate_app.py``."""

from __future__ import annotations

from contenders.base import Contender, RunContext, pg_drop, pg_recreate, pkg_versions

APP = "contenders.sites.procrastinate_app.app"


class ProcrastinatePostgres(Contender):
    key = "procrastinate-postgres"
    label = "procrastinate, PostgreSQL"
    store = "postgres"
    enqueue_module = "contenders.sites.enqueue_procrastinate"
    has_bulk = True  # Task.batch_defer (one INSERT of many rows)
    notes = (
        "procrastinate worker --concurrency {slots} (one process, asyncio; the sync task runs in a "
        "thread), LISTEN/NOTIFY on (default), finished jobs kept as rows (delete_jobs=never, "
        "default; it has no result store), --log-level warning (default INFO logs every job); "
        "enqueue is sync Task.defer(), bulk = Task.batch_defer"
    )

    def conninfo(self, ctx: RunContext) -> str:
        params = {**ctx.pg_dsn_admin, "dbname": self.pg_name(ctx)}
        return " ".join(f"{key}={value}" for key, value in params.items())

    def prepare(self, ctx: RunContext) -> None:
        pg_recreate(ctx, self.pg_name(ctx))
        self.run(ctx, [ctx.python, "-m", "procrastinate", "--app", APP, "schema", "--apply"])

    def cleanup(self, ctx: RunContext) -> None:
        pg_drop(ctx, self.pg_name(ctx))

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {**super().env(ctx), "BENCH_PG_CONNINFO": self.conninfo(ctx)}

    def worker_argv(self, ctx: RunContext) -> list[str]:
        return [
            ctx.python,
            "-m",
            "procrastinate",
            "--app",
            APP,
            "--log-level",
            "warning",
            "worker",
            "--concurrency",
            str(ctx.slots),
        ]

    def versions(self) -> dict[str, str]:
        return pkg_versions("procrastinate", "psycopg")


CONTENDERS = [ProcrastinatePostgres()]

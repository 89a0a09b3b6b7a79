"""``djangoq2-redis``: django-q2's ``qcluster`` with its Redis broker (database 9). django-q2 also
needs a Django database for its own models: a SQLite file in the run's temp dir, migrated in
``prepare``. Project: ``contenders/sites/djangoq2_site/``."""

from __future__ import annotations

from contenders.base import Contender, RunContext, pkg_versions


class DjangoQ2Redis(Contender):
    key = "djangoq2-redis"
    label = "django-q2, Redis"
    store = "redis"
    enqueue_module = "contenders.sites.djangoq2_site.enqueue"
    has_bulk = False  # no bulk enqueue (async_iter enqueues one message per item)
    notes = (
        "manage.py qcluster, Redis broker, workers {slots} (its default is the CPU count, 2 "
        "here): main + sentinel + pusher + monitor + {slots} worker processes, plus a stdlib "
        "launcher process that forwards SIGTERM to the main process only (django-q2 hangs when "
        "its whole process group gets SIGTERM); save_limit -1 (successes not saved), log_level "
        "WARNING (default INFO logs every task), timeout 60 s, retry 120 s; its models in SQLite"
    )

    def _db(self, ctx: RunContext):
        return ctx.tmp / "djangoq2.sqlite3"

    def _remove_db(self, ctx: RunContext) -> None:
        db = self._db(ctx)
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)

    def prepare(self, ctx: RunContext) -> None:
        self._remove_db(ctx)
        self.run(ctx, [ctx.python, "-m", "django", "migrate", "--verbosity", "0"])

    def cleanup(self, ctx: RunContext) -> None:
        self._remove_db(ctx)

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {
            **super().env(ctx),
            "DJANGO_SETTINGS_MODULE": "contenders.sites.djangoq2_site.settings",
            "BENCH_DJQ_SQLITE": str(self._db(ctx)),
            "BENCH_REDIS_URL": ctx.redis_url,
            "BENCH_DJQ_WORKERS": str(ctx.slots),
        }

    def worker_argv(self, ctx: RunContext) -> list[str]:
        return [ctx.python, "-m", "contenders.sites.djangoq2_site.qcluster"]

    def versions(self) -> dict[str, str]:
        return pkg_versions("django-q2", "Django", "redis")


CONTENDERS = [DjangoQ2Redis()]

"""huey 3 contenders: ``huey-sqlite`` (SqliteHuey, a file in the run's temp dir) and ``huey-redis``
(RedisHuey on Redis database 9). App: ``contenders/sites/huey_app.py``."""

from __future__ import annotations

from contenders.base import Contender, RunContext, pkg_versions


class Huey(Contender):
    enqueue_module = "contenders.sites.enqueue_huey"
    has_bulk = False  # huey has no bulk enqueue (Task.map enqueues one by one)

    def __init__(self, store: str) -> None:
        self.store = store
        self.key = f"huey-{store}"
        self.label = f"huey, {'SQLite' if store == 'sqlite' else 'Redis'}"
        common = (
            "huey_consumer -w {slots} -k thread ({slots} worker threads, one process), "
            "results=False, -q (WARNING logging: its default INFO logs 2 lines per task)"
        )
        if store == "sqlite":
            self.notes = (
                f"{common}; SqliteHuey defaults: WAL, SQLite's default synchronous (FULL); "
                "the consumer polls an empty queue with backoff 0.1 s x1.15 up to 10 s"
            )
        else:
            self.notes = f"{common}; RedisHuey, blocking BRPOP dequeue (no polling)"

    def _db(self, ctx: RunContext):
        return ctx.tmp / "huey.sqlite3"

    def _remove_db(self, ctx: RunContext) -> None:
        db = self._db(ctx)
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)

    def prepare(self, ctx: RunContext) -> None:
        # Redis: the harness has FLUSHDB'd database 9. SQLite: a new file, whose tables huey
        # creates when the enqueue process opens it (before the clock starts).
        if self.store == "sqlite":
            self._remove_db(ctx)

    def cleanup(self, ctx: RunContext) -> None:
        if self.store == "sqlite":
            self._remove_db(ctx)

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {
            **super().env(ctx),
            "BENCH_HUEY_STORE": self.store,
            "BENCH_HUEY_SQLITE": str(self._db(ctx)),
            "BENCH_REDIS_URL": ctx.redis_url,
        }

    def worker_argv(self, ctx: RunContext) -> list[str]:
        app = "contenders.sites.huey_app.huey"
        consumer = ["-w", str(ctx.slots), "-k", "thread", "-q"]
        return [ctx.python, "-m", "huey.bin.huey_consumer", app, *consumer]

    def versions(self) -> dict[str, str]:
        return pkg_versions("huey", *(["redis"] if self.store == "redis" else []))


CONTENDERS = [Huey("sqlite"), Huey("redis")]

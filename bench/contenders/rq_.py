"""``rq-redis``: RQ on Redis database 9. Queue and task: ``contenders/sites/rq_app.py``."""

from __future__ import annotations

from contenders.base import Contender, RunContext, pkg_versions


class RQRedis(Contender):
    key = "rq-redis"
    label = "RQ, Redis"
    store = "redis"
    enqueue_module = "contenders.sites.enqueue_rq"
    has_bulk = True  # Queue.enqueue_many (one Redis pipeline)
    notes = (
        "{slots} x rq worker (RQ's default Worker: one job at a time, forks a work horse process "
        "per job; the docs' way to concurrency is more workers) under a small stdlib launcher "
        "process; not used: SimpleWorker (no fork, faster), rq worker-pool (hung on group "
        "SIGTERM); result_ttl=0 (no result kept); -q (WARNING: its default INFO logs every job); "
        "bulk = Queue.enqueue_many"
    )

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {**super().env(ctx), "BENCH_REDIS_URL": ctx.redis_url}

    def worker_argv(self, ctx: RunContext) -> list[str]:
        # N ``rq worker`` processes under the replicas launcher, as RQ's docs recommend for
        # concurrency ("start more workers"). RQ's own ``rq worker-pool -n 2`` was the first
        # choice, but with SIGTERM sent to its whole group one of its workers stayed blocked in
        # BLMOVE in 2 runs out of 6 and the pool never exited.
        rq_worker = ["-m", "rq.cli", "worker", "--url", ctx.redis_url, "--quiet", "default"]
        return [ctx.python, "-m", "contenders.sites.replicas", str(ctx.slots), *rq_worker]

    def versions(self) -> dict[str, str]:
        return pkg_versions("rq", "redis")


CONTENDERS = [RQRedis()]

"""``celery-redis``: Celery with its Redis broker on database 9, no result backend.
App: ``contenders/sites/celery_app.py``."""

from __future__ import annotations

from contenders.base import Contender, RunContext, pkg_versions


class CeleryRedis(Contender):
    key = "celery-redis"
    label = "Celery, Redis"
    store = "redis"
    enqueue_module = "contenders.sites.enqueue_celery"
    has_bulk = False  # no native bulk publish: a group's apply_async sends one message per task
    notes = (
        "celery worker -P prefork -c {slots} ({slots} pool processes + the main process), "
        "prefetch multiplier 4, acks_late off, Redis visibility_timeout 3600 s (all defaults), "
        "task_ignore_result (no result backend), -l WARNING (default), mingle/gossip/heartbeat on "
        "(defaults); enqueue is task.delay()"
    )

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {**super().env(ctx), "BENCH_REDIS_URL": ctx.redis_url}

    def worker_argv(self, ctx: RunContext) -> list[str]:
        return [
            ctx.python,
            "-m",
            "celery",
            "-A",
            "contenders.sites.celery_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(ctx.slots),
            "-l",
            "WARNING",
        ]

    def versions(self) -> dict[str, str]:
        return pkg_versions("celery", "kombu", "redis")


CONTENDERS = [CeleryRedis()]

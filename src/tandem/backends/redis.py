"""``tandem.backends.redis.RedisBackend``: durable tasks in Redis.

An enqueue stores the task in Redis before it returns — one atomic round trip (a ``MULTI`` of plain
writes; the push script for a unique task, whose key must be looked up first). Redis is not part
of your database transaction, so the task exists (and may run) even if the enqueuing transaction
later rolls back, and may run before that transaction commits. This is what Django says of task
backends in general: to enqueue only once the data a task needs is committed, call ``enqueue()``
from ``transaction.on_commit()``. (``DatabaseBackend`` instead stores the task in the transaction.)

After the store, supervisors in this process are woken directly, and supervisors elsewhere by the
message the push publishes (``tandem.brokers.listeners.RedisListener``).

Options: the common ones, plus ``conf.REDIS_OPTION_KEYS`` (``url``, ``password``, ``ssl_*``,
``prefix``, ``result_ttl``). Those are accepted by this backend only: on the database backend
they are unknown keys, an error, because a ``url`` that is silently ignored would let a user
believe their tasks go to Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from asgiref.sync import sync_to_async
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from tandem import wakeup
from tandem.backends.base import TandemBackend
from tandem.brokers.base import NewTask
from tandem.conf import REDIS_OPTION_KEYS, RedisOptions, parse_redis_options
from tandem.diagnosis import extra_hint

try:
    from tandem.brokers.redis import RedisBroker
    from tandem.brokers.redis_client import connect
except ModuleNotFoundError as exc:  # the optional redis package: said by check() and broker
    if exc.name != "redis":
        raise
    MISSING_REDIS: str | None = extra_hint("redis")
else:
    MISSING_REDIS = None


class RedisBackend(TandemBackend):
    transactional_enqueue = False
    extra_option_keys = REDIS_OPTION_KEYS

    @cached_property
    def redis_options(self) -> RedisOptions:
        """The parsed Redis keys of ``OPTIONS``; raises ``ImproperlyConfigured`` naming the key."""
        return parse_redis_options(self.alias, self.params)

    @cached_property
    def broker(self) -> RedisBroker:  # type: ignore[override]
        if MISSING_REDIS:
            raise ImproperlyConfigured(MISSING_REDIS)
        options = self.redis_options
        from tandem.conf import masked_url

        return RedisBroker(
            self.alias,
            connect(options),
            prefix=options.prefix,
            result_ttl=options.result_ttl,
            url=masked_url(options.url),
        )

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages = super().check(**kwargs)
        if MISSING_REDIS:
            messages.append(checks.Error(MISSING_REDIS, obj=self.alias, id="tandem.E005"))
        try:
            self.redis_options  # noqa: B018 — parsing is the check
        except ImproperlyConfigured as exc:
            messages.append(checks.Error(str(exc), obj=self.alias, id="tandem.E001"))
        return messages

    def _store(self, tasks: Sequence[NewTask]) -> list[str]:
        ids = self.broker.push(tasks)
        if len(tasks) == 1:  # one enqueue(): one queue
            wakeup.notify(self.alias, tasks[0].queue_name)
        else:
            for queue in sorted({t.queue_name for t in tasks}):
                wakeup.notify(self.alias, queue)
        return ids

    async def _astore(self, tasks: Sequence[NewTask]) -> list[str]:
        # The client is thread-safe and touches no Django connection: any worker thread will do.
        return await sync_to_async(self._store, thread_sensitive=False)(tasks)

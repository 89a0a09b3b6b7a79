"""``tandem.backends.database.DatabaseBackend``: durable tasks in your Django database.

An enqueue inserts the task's row through the caller's connection, so inside
``transaction.atomic()`` it commits or rolls back with the caller's own data, and no worker can
see it before the commit. After the commit, supervisors in this process are woken directly and,
on PostgreSQL, supervisors elsewhere through ``NOTIFY`` (which PostgreSQL delivers on commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.db import transaction

from tandem import wakeup
from tandem.backends.base import TandemBackend
from tandem.brokers.base import NewTask

if TYPE_CHECKING:
    from tandem.brokers.database import DatabaseBroker


class DatabaseBackend(TandemBackend):
    transactional_enqueue = True
    #: ``enqueue_many`` hands every task to one ``push_and_notify``: one write transaction (the
    #: caller's, if any), ``INSERT_BATCH`` rows per statement, one wake-up — so one commit, not
    #: one per batch.
    enqueue_batch = None

    @cached_property
    def broker(self) -> DatabaseBroker:  # type: ignore[override]
        return database_broker()(
            self.alias, worker_synchronous=self.tandem_options.sqlite_worker_synchronous
        )

    def subinterpreter_blocker(self) -> str | None:
        # (not self.broker: the broker is built from the options this check helps to parse)
        return database_broker()(self.alias).dialect.subinterpreter_blocker

    def _store(self, tasks: Sequence[NewTask]) -> list[str]:
        broker = self.broker
        queues = sorted({t.queue_name for t in tasks})
        ids = broker.push_and_notify(tasks, queues)
        alias = self.alias

        def wake() -> None:
            for queue in queues:
                wakeup.notify(alias, queue)

        transaction.on_commit(wake, using=broker.database)
        return ids

    def wake_after_store(self, queues: Sequence[str]) -> None:
        alias = self.alias

        def wake() -> None:
            for queue in queues:
                wakeup.notify(alias, queue)

        transaction.on_commit(wake, using=self.broker.database)

    async def _astore(self, tasks: Sequence[NewTask]) -> list[str]:
        # The database work runs where Django runs all async ORM calls: its sync thread.
        return await sync_to_async(self._store, thread_sensitive=True)(tasks)


def database_broker() -> type[DatabaseBroker]:
    """The broker class, imported only once tandem is known to be installed: its models cannot
    load otherwise, and ``manage.py check`` is to say so in one line (tandem.E003)."""
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    from tandem import diagnosis

    if apps.ready and not apps.is_installed("tandem"):
        raise ImproperlyConfigured(diagnosis.NOT_INSTALLED)
    from tandem.brokers.database import DatabaseBroker

    return DatabaseBroker

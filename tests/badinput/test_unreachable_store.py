"""A store that cannot be reached at enqueue: the error reaches the caller, nothing is dropped.

``enqueue()`` stores the task before it returns; when it cannot, it must raise (never return a
result for a task that exists nowhere, never swallow the error), and the error must not show the
store's password. The database case runs on each run's own engine: a closed loopback port for
PostgreSQL and MariaDB, a path in a directory that does not exist for SQLite.

How a *supervisor* lives through a store outage (back-off, nothing lost) is in
tests/worker/test_store_outage.py.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import OperationalError, connections
from django.db.utils import load_backend
from django.tasks import task_backends
from django.tasks.signals import task_enqueued

import tandem
from tandem.models import TaskRecord
from tandem.worker.supervisor import Supervisor
from tests import tasks
from tests.support import free_port, redis_store
from tests.support.conformance import capture

ALIAS = "tandem_unreachable"
PASSWORD = "hunter2-never-in-a-message"


class ToUnreachable:
    """Routes tandem's models to the unreachable database."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return ALIAS if model._meta.app_label == "tandem" else None  # type: ignore[attr-defined]

    db_for_write = db_for_read


def every_message(exc: BaseException) -> str:
    """The text of ``exc`` and of every exception it was raised from."""
    texts = []
    seen: BaseException | None = exc
    while seen is not None:
        texts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


@pytest.fixture
def unreachable_database(settings: Any) -> Iterator[str]:
    """TaskRecord routed to a database alias that cannot be reached; yields the alias."""
    entry = dict(connections.settings["default"])
    if entry["ENGINE"].endswith("sqlite3"):
        entry["NAME"] = "/nonexistent-tandem-directory/tasks.sqlite3"
    else:
        entry.update(HOST="127.0.0.1", PORT=str(free_port()), PASSWORD=PASSWORD)
        entry["OPTIONS"] = {**entry.get("OPTIONS", {}), "connect_timeout": 5}
    entry = connections.configure_settings({"default": dict(entry), ALIAS: entry})[ALIAS]
    # A connection made here, not declared in DATABASES: Django's test case allows it (it is
    # "dynamically created") and no test database is made for it.
    wrapper = load_backend(entry["ENGINE"]).DatabaseWrapper(entry, ALIAS)
    setattr(connections._connections, ALIAS, wrapper)
    settings.DATABASE_ROUTERS = [f"{__name__}.ToUnreachable"]
    try:
        yield ALIAS
    finally:
        wrapper.close()
        delattr(connections._connections, ALIAS)


@pytest.mark.django_db
def test_an_unreachable_database_fails_the_enqueue(unreachable_database: str) -> None:
    backend = task_backends["default"]
    assert backend.broker.database == unreachable_database  # type: ignore[attr-defined]

    with capture(task_enqueued) as sent:
        for enqueue in (
            lambda: tasks.add.enqueue(1, 2),
            lambda: tandem.enqueue_many(tasks.add, [((1, 2), {}), ((3, 4), {})]),
            lambda: async_to_sync(tasks.add.aenqueue)(1, 2),
        ):
            with pytest.raises(OperationalError) as caught:
                enqueue()
            assert PASSWORD not in every_message(caught.value)
    assert sent == []
    assert PASSWORD not in backend.broker.describe()  # the worker's banner
    # The run's real database got nothing either (the router sent every write away).
    assert not TaskRecord.objects.using("default").exists()


@pytest.fixture
def unreachable_redis(settings: Any) -> str:
    """TASKS["default"] on a RedisBackend whose URL (with a password) points at a closed port."""
    url = f"redis://tandem:{PASSWORD}@127.0.0.1:{free_port()}/0"
    settings.TASKS = {
        "default": {
            "BACKEND": redis_store.REDIS_BACKEND,
            "QUEUES": ["default"],
            "OPTIONS": {"url": url, "prefix": redis_store.PREFIX, "executor": "thread"},
        }
    }
    return url


@pytest.mark.redis
def test_an_unreachable_redis_fails_the_enqueue(unreachable_redis: str) -> None:
    with capture(task_enqueued) as sent:
        for enqueue in (
            lambda: tasks.add.enqueue(1, 2),
            lambda: tandem.enqueue_many(tasks.add, [((1, 2), {})]),
            lambda: async_to_sync(tasks.add.aenqueue)(1, 2),
        ):
            with pytest.raises(ConnectionError) as caught:
                enqueue()
            assert str(caught.value).startswith("Redis: ")
            assert PASSWORD not in every_message(caught.value)
    assert sent == []


@pytest.mark.redis
@pytest.mark.django_db
def test_a_supervisor_logs_an_unreachable_redis_without_its_password(
    unreachable_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = Supervisor("default", burst=True, listen=False, schedules=False)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ConnectionError) as caught:
            supervisor.start()  # registering the worker is its first store call
        supervisor.close()
    assert PASSWORD not in every_message(caught.value)
    assert caplog.records  # close() logged that the worker could not be unregistered
    assert PASSWORD not in caplog.text


# -- secrets in banners and logs -------------------------------------------------------------------


@pytest.fixture
def acl_user(settings: Any) -> Iterator[tuple[str, str]]:
    """A Redis user with a password (the test server has none), limited to this run's keys."""
    client = redis_store.client()
    name, password = f"tandem-badinput-{os.getpid()}", f"{PASSWORD}-{os.getpid()}"
    client.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[f"{redis_store.PREFIX}:*"],
        channels=[f"{redis_store.PREFIX}:*"],
        commands=["+@all"],
    )
    try:
        yield name, password
    finally:
        client.acl_deluser(name)
        redis_store.delete_keys(client)


@pytest.mark.redis
@pytest.mark.django_db
def test_the_worker_banner_and_logs_show_a_redis_url_redacted(
    settings: Any, acl_user: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    user, password = acl_user
    host = redis_store.URL.split("://", 1)[1]
    settings.TASKS = {
        "default": {
            "BACKEND": redis_store.REDIS_BACKEND,
            "QUEUES": ["default"],
            "OPTIONS": {
                "url": f"redis://{user}:{password}@{host}",
                "prefix": redis_store.PREFIX,
                "executor": "thread",
            },
        }
    }
    result = tasks.add.enqueue(1, 2)  # authenticates: the password is right
    out, err = io.StringIO(), io.StringIO()

    with caplog.at_level(logging.DEBUG):
        call_command("tandem", "worker", "--burst", "--no-schedule", stdout=out, stderr=err)

    result.refresh()
    assert result.return_value == 3
    banner = out.getvalue()
    assert (
        f"  store:  redis (redis://{user}:***@{host}, prefix {redis_store.PREFIX!r}), "
        "backend 'default'\n" in banner
    )
    for text in (banner, err.getvalue(), caplog.text):
        assert password not in text

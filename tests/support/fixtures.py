"""Fixtures more than one tier uses (a tier's conftest imports the ones it needs):

- ``children``: real worker processes on the test database, killed at the end of the test;
- ``scale``: several ``tandem worker`` processes on one real store, parametrized indirectly by
  the store: ``"database"`` (the run's database: SQLite, PostgreSQL or MariaDB, the test database
  pytest-django made) or ``"redis"`` (the shared Redis on 127.0.0.1:6379 under this run's key
  prefix; marked ``redis``, so it runs once, in the SQLite run, and fails when Redis does not
  answer); ``private_scale``: a private server of the store the test restarts, and a ``Scale``
  on it;
- ``servers``: real ``tandem serve`` processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.support.processes import Children
from tests.support.scale import Scale
from tests.support.servers import PrivateMariaDB, PrivatePostgres, PrivateRedis, PrivateServer
from tests.support.serving import Servers


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    started = Children(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


@pytest.fixture
def scale(request: pytest.FixtureRequest, children: Children, tmp_path: Path) -> Iterator[Scale]:
    if request.param == "database":
        # The test database: the test module is marked django_db(transaction=True).
        assert request.node.get_closest_marker("django_db"), "mark the test django_db"
        yield Scale(children, tmp_path, {"TANDEM_SCALE_STORE": "database"})
        return
    from tests.support.redis_store import PREFIX, URL, client, delete_keys

    redis_client = client()  # fails (never skips) when Redis does not answer
    env = {"TANDEM_SCALE_STORE": "redis", "TANDEM_REDIS_URL": URL, "TANDEM_REDIS_PREFIX": PREFIX}
    try:
        yield Scale(children, tmp_path, env)
    finally:
        children.kill_all()
        delete_keys(redis_client)


@pytest.fixture
def private_scale(
    request: pytest.FixtureRequest, children: Children, tmp_path: Path
) -> Iterator[tuple[Scale, PrivateServer]]:
    """A private server of the kind ``request.param`` names, and a ``Scale`` on it."""
    kind = request.param
    server: PrivateServer
    if kind == "postgres":
        server = PrivatePostgres()
    elif kind == "mariadb":
        server = PrivateMariaDB()
    else:
        server = PrivateRedis()
    try:
        if kind == "redis":
            env = {
                "TANDEM_SCALE_STORE": "redis",
                "TANDEM_REDIS_PREFIX": settings.TANDEM_TEST_REDIS["prefix"],
                **server.settings_env(),
            }
        else:
            env = {
                "TANDEM_SCALE_STORE": "database",
                "TANDEM_DB_NAME": server.database,  # type: ignore[attr-defined]
                **server.settings_env(),
            }
        scale = Scale(children, tmp_path, env)
        if kind != "redis":
            scale.migrate()
        yield scale, server
    finally:
        children.kill_all()
        server.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()

"""The start-up check of tandem's migrations reads ``django_migrations`` and the files shipped
in ``tandem.migrations``, not Django's whole migration graph; it answers as the graph does."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from tandem.brokers.database import _unapplied_migrations

pytestmark = pytest.mark.django_db


def graph_plan() -> list[str]:
    executor = MigrationExecutor(connection)
    leaves = [key for key in executor.loader.graph.leaf_nodes() if key[0] == "tandem"]
    return [migration.name for migration, _ in executor.migration_plan(leaves)]


def test_tandems_migrations_are_a_straight_line_without_replaces() -> None:
    """What the fast check assumes: the shipped files, in name order, are the graph's line."""
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    ours = {key: m for key, m in loader.disk_migrations.items() if key[0] == "tandem"}
    assert not [key for key, m in ours.items() if m.replaces], "a squashed tandem migration"
    line = loader.graph.forwards_plan(loader.graph.leaf_nodes("tandem")[0])
    assert [name for app, name in line if app == "tandem"] == sorted(n for _, n in ours)


def test_a_migrated_database_has_nothing_unapplied() -> None:
    assert _unapplied_migrations(connection) == [] == graph_plan()


def test_the_migrations_not_recorded_are_named_as_the_graph_names_them() -> None:
    recorder = MigrationRecorder(connection)
    names = sorted(name for app, name in recorder.applied_migrations() if app == "tandem")
    last = names[-1]
    recorder.record_unapplied("tandem", last)  # (rolled back with the test's transaction)
    assert _unapplied_migrations(connection) == [last] == graph_plan()


def test_where_migration_modules_names_tandem_djangos_graph_answers(settings: Any) -> None:
    recorder = MigrationRecorder(connection)
    last = max(name for app, name in recorder.applied_migrations() if app == "tandem")
    recorder.record_unapplied("tandem", last)
    assert _unapplied_migrations(connection) == [last]
    settings.MIGRATION_MODULES = {"tandem": None}  # no migrations: Django plans none for it
    assert _unapplied_migrations(connection) == [] == graph_plan()

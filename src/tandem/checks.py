"""System checks: tandem's settings are validated by ``manage.py check`` (backends run theirs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks


@checks.register(checks.Tags.compatibility)
def check_sqlite_returning(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The claim needs ``UPDATE … RETURNING``: SQLite >= 3.35 (only checked when SQLite is used)."""
    import sqlite3

    from django.db import connections

    uses_sqlite = any(connections[alias].vendor == "sqlite" for alias in connections)
    if uses_sqlite and sqlite3.sqlite_version_info < (3, 35):
        return [
            checks.Error(
                f"tandem needs SQLite >= 3.35 for UPDATE … RETURNING; this Python links "
                f"SQLite {sqlite3.sqlite_version}.",
                hint="Use a Python built against a newer SQLite, or PostgreSQL.",
                id="tandem.E002",
            )
        ]
    return []

"""What the database broker warns about in its store's configuration (``Broker.setup_warnings``:
system check tandem.W003 and the start-up banner)."""

from __future__ import annotations

from typing import Any


def sqlite_transaction_mode(alias: str, database: str, connection: Any) -> tuple[str, str] | None:
    """(message, hint) when ``TASKS[alias]`` keeps its tasks in a SQLite database whose
    transactions start DEFERRED: the site's read-then-write transactions then fail at once with
    'database is locked' while a worker writes."""
    if connection.vendor != "sqlite":
        return None
    mode = str(connection.settings_dict.get("OPTIONS", {}).get("transaction_mode") or "")
    if mode.upper() == "IMMEDIATE":
        return None
    return (
        f"TASKS[{alias!r}] writes its tasks to the SQLite database {database!r}, which "
        f"uses SQLite's {mode.upper() or 'default (DEFERRED)'} transaction mode: while a "
        "worker writes, the site's transactions that read and then write fail at once "
        "with 'database is locked' (the timeout does not help).",
        f'Add "transaction_mode": "IMMEDIATE" to DATABASES[{database!r}]["OPTIONS"], '
        f'e.g. "OPTIONS": {{"transaction_mode": "IMMEDIATE", "timeout": 20}} '
        "(docs/how-to/postgres-mariadb-sqlite.md).",
    )


__all__ = ["sqlite_transaction_mode"]

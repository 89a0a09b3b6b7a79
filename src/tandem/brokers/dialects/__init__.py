"""The database broker's SQL, one dialect per store (``base.Dialect``)."""

from __future__ import annotations

from tandem.brokers.dialects.base import Dialect, Pick
from tandem.brokers.dialects.mysql import MySQLDialect
from tandem.brokers.dialects.postgresql import PostgreSQLDialect
from tandem.brokers.dialects.sqlite import SQLiteDialect

DIALECTS: dict[str, Dialect] = {
    d.vendor: d for d in (SQLiteDialect(), PostgreSQLDialect(), MySQLDialect())
}


def dialect_for(vendor: str) -> Dialect:
    """The dialect of a connection's ``vendor``: the one place the database broker asks it."""
    try:
        return DIALECTS[vendor]
    except KeyError:
        raise ValueError(
            f"tandem's database broker runs on SQLite, PostgreSQL and MariaDB/MySQL, not {vendor!r}"
        ) from None


__all__ = ["DIALECTS", "Dialect", "Pick", "dialect_for"]

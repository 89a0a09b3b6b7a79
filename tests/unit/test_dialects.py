"""The database broker's SQL dialects: one per store, picked from the connection's vendor in one
place — no other module of ``tandem.brokers`` asks which database it has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tandem.brokers
from tandem.brokers.dialects import dialect_for
from tandem.brokers.dialects.mysql import MySQLDialect
from tandem.brokers.dialects.postgresql import PostgreSQLDialect
from tandem.brokers.dialects.sqlite import SQLiteDialect


def test_each_vendor_has_its_dialect():
    assert isinstance(dialect_for("sqlite"), SQLiteDialect)
    assert isinstance(dialect_for("postgresql"), PostgreSQLDialect)
    assert isinstance(dialect_for("mysql"), MySQLDialect)


def test_an_unknown_vendor_is_refused_by_name():
    with pytest.raises(ValueError) as caught:
        dialect_for("oracle")

    assert str(caught.value) == (
        "tandem's database broker runs on SQLite, PostgreSQL and MariaDB/MySQL, not 'oracle'"
    )


def test_no_broker_module_branches_on_the_vendor():
    brokers = Path(tandem.brokers.__file__).parent
    branching = re.compile(r"vendor\s*(==|!=|in\b|not in\b)")
    found = [
        f"{path.relative_to(brokers)}:{number}"
        for path in sorted(brokers.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if branching.search(line)
    ]

    assert found == []

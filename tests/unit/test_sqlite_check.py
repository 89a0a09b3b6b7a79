"""tandem.W003: the task database is SQLite without ``"transaction_mode": "IMMEDIATE"``; the
warning names the exact OPTIONS to add, and ``tandem worker`` repeats it in its banner."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connections

from tandem.checks import check_sqlite_transaction_mode

pytestmark = pytest.mark.skipif(
    django_settings.DB_KIND != "sqlite", reason="a SQLite check: the SQLite run covers it"
)


@pytest.fixture
def deferred() -> Any:
    """The test database's connection settings without IMMEDIATE, for one test."""
    options = connections["default"].settings_dict["OPTIONS"]
    saved = copy.deepcopy(options)
    options.pop("transaction_mode", None)
    try:
        yield options
    finally:
        options.clear()
        options.update(saved)


def test_warns_with_the_options_to_add(deferred: Any) -> None:
    (warning,) = check_sqlite_transaction_mode(None)
    assert warning.id == "tandem.W003"
    assert "SQLite's default (DEFERRED) transaction mode" in warning.msg
    assert "fail at once with 'database is locked'" in warning.msg
    assert 'Add "transaction_mode": "IMMEDIATE" to DATABASES[\'default\']["OPTIONS"]' in (
        warning.hint or ""
    )


def test_an_explicit_deferred_mode_warns_too(deferred: Any) -> None:
    deferred["transaction_mode"] = "DEFERRED"
    (warning,) = check_sqlite_transaction_mode(None)
    assert "SQLite's DEFERRED transaction mode" in warning.msg


def test_silent_with_immediate() -> None:
    assert connections["default"].settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert check_sqlite_transaction_mode(None) == []


@pytest.mark.django_db(transaction=True)
def test_the_worker_banner_repeats_it(deferred: Any) -> None:
    out = io.StringIO()
    call_command("tandem", "worker", "--burst", stdout=out)
    (line,) = [line for line in out.getvalue().splitlines() if "tandem.W003" in line]
    assert line.startswith("  sqlite: WARNING (tandem.W003): TASKS['default'] writes its tasks")
    assert '"transaction_mode": "IMMEDIATE"' in line


@pytest.mark.django_db(transaction=True)
def test_no_banner_warning_with_immediate() -> None:
    out = io.StringIO()
    call_command("tandem", "worker", "--burst", stdout=out)
    assert "tandem.W003" not in out.getvalue()


@pytest.mark.django_db  # (other checks may open the connection)
def test_manage_py_check_reports_it(deferred: Any) -> None:
    out = io.StringIO()
    call_command("check", stdout=out, stderr=out)
    assert "(tandem.W003)" in out.getvalue()

"""The rate-limit corpus: bad ``rate_limit`` strings at task declaration and as a pool option
(the settings check reports it as tandem.E001). Every refusal names the value and the form."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.tasks import task_backends
from django.tasks.exceptions import InvalidTask

import tandem
from tandem.conf import parse_options
from tandem.rates import parse_rate

FORM = '"N/s", "N/m" or "N/h"'
BAD_STRINGS = ["10/x", "abc", "", "5", "/s", "5/", "1.5/s", "5/sec", "5/S", "5 per s", "5/s/m"]


def send(to: str) -> str:
    return to


def declare(**extras: Any) -> Any:
    return tandem.task(**extras)(send)


@pytest.mark.parametrize("value", [*BAD_STRINGS, "-1/m"])
def test_a_malformed_rate_is_refused_at_declaration(value: str) -> None:
    message = (
        f"rate_limit must be {FORM} (N an integer >= 1: at most N starts in any second, "
        f"minute or hour), got {value!r}."
    )
    with pytest.raises(InvalidTask, match=f"^{re.escape(message)}$"):
        declare(rate_limit=value)


@pytest.mark.parametrize("value", ["0/s", "0/h", "000/m"])
def test_a_rate_of_zero_is_refused(value: str) -> None:
    message = f"rate_limit must allow at least one start (N >= 1), got {value!r}."
    with pytest.raises(InvalidTask, match=f"^{re.escape(message)}$"):
        declare(rate_limit=value)


@pytest.mark.parametrize("value", [5, 1.5, True, b"5/s", ["5/s"], {"n": 5}])
def test_a_rate_that_is_not_a_string_is_refused(value: object) -> None:
    message = f"rate_limit must be a string {FORM} (N an integer >= 1), got {value!r}."
    with pytest.raises(InvalidTask, match=f"^{re.escape(message)}$"):
        declare(rate_limit=value)


def test_a_valid_rate_is_kept_in_its_stored_form() -> None:
    assert declare(rate_limit=" 5 / s ").rate_limit == "5/s"
    assert declare(rate_limit="30/m").rate_limit == "30/m"
    assert declare().rate_limit is None
    assert parse_rate("3/h") == (3, 3600)


def pool_rate(value: object) -> str:
    options = {"pools": {"mail": {"queues": ["default"], "rate_limit": value}}}
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_options("default", {"OPTIONS": options}, frozenset({"default"}))
    return str(caught.value)


@pytest.mark.parametrize("value", [*BAD_STRINGS, "-1/m", "0/s", 10, 2.5, ["1/s"]])
def test_a_bad_pool_rate_is_refused_naming_its_key(value: object) -> None:
    message = pool_rate(value)

    assert message.startswith("TASKS['default']['OPTIONS']['pools']['mail']['rate_limit'] must ")
    assert message.endswith(f"got {value!r}.")


def test_a_good_pool_rate_is_read_in_its_stored_form() -> None:
    options = {"pools": {"mail": {"queues": ["default"], "rate_limit": "100/m "}}}
    [pool] = parse_options("default", {"OPTIONS": options}, frozenset({"default"})).pools
    assert pool.rate_limit == "100/m"


def test_the_settings_check_reports_a_bad_pool_rate_as_e001(settings: Any) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "tandem.backends.database.DatabaseBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"pools": {"mail": {"queues": ["default"], "rate_limit": "0/s"}}},
        }
    }
    errors = [e for e in task_backends["default"].check() if e.id == "tandem.E001"]
    assert len(errors) == 1
    assert "['rate_limit'] must allow at least one start (N >= 1), got '0/s'." in errors[0].msg

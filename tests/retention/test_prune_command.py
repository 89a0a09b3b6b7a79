"""``manage.py tandem prune``: what it deletes, ``--dry-run``, its messages and progress line."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tandem.brokers.base import FAILED, SUCCESSFUL
from tandem.cli.common import parse_age

pytestmark = pytest.mark.django_db

CUTOFF = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def prune(*args: str, stderr: io.StringIO | None = None) -> str:
    out = io.StringIO()
    call_command("tandem", "prune", *args, stdout=out, stderr=stderr or io.StringIO())
    return out.getvalue()


@pytest.fixture
def store(finished):
    now = timezone.now()
    return {
        "ok_10d": finished(SUCCESSFUL, now - timedelta(days=10)),
        "ok_2h": finished(SUCCESSFUL, now - timedelta(hours=2)),
        "ok_10m": finished(SUCCESSFUL, now - timedelta(minutes=10)),
        "failed_10d": finished(FAILED, now - timedelta(days=10)),
        "failed_2h": finished(FAILED, now - timedelta(hours=2)),
    }


def test_by_default_finished_tasks_older_than_seven_days_are_deleted(store, kept):
    output = prune()

    assert re.fullmatch(
        rf"Deleted 2 finished task\(s\) of backend 'default' that finished before {CUTOFF}\.\n",
        output,
    )
    assert kept(store) == {"ok_2h", "ok_10m", "failed_2h"}


def test_older_than_and_status(store, kept):
    output = prune("--older-than", "1h", "--status", "successful")

    assert re.fullmatch(
        rf"Deleted 2 successful task\(s\) of backend 'default' that finished before {CUTOFF}\.\n",
        output,
    )
    assert kept(store) == {"ok_10m", "failed_10d", "failed_2h"}
    assert prune("--older-than", "300", "--status", "failed").startswith("Deleted 2 failed")
    assert kept(store) == {"ok_10m"}


def test_the_cutoff_printed_is_now_minus_the_age(store):
    before = timezone.now() - timedelta(hours=12)

    output = prune("--older-than", "12h")

    printed = re.search(CUTOFF, output).group(0)
    assert abs(datetime.fromisoformat(printed) - before) < timedelta(seconds=5)


def test_dry_run_counts_and_deletes_nothing(store, kept):
    output = prune("--dry-run", "--older-than", "30m")

    assert re.fullmatch(
        rf"Would delete 4 finished task\(s\) of backend 'default' that finished before "
        rf"{CUTOFF}\.\n",
        output,
    )
    assert kept(store) == set(store)
    assert prune("--dry-run", "--older-than", "30m", "--status", "failed").startswith(
        "Would delete 2 failed task(s)"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 604800), ("12h", 43200), ("30m", 1800), ("45s", 45), ("90", 90), ("1.5h", 5400)],
)
def test_ages(text, seconds):
    assert parse_age(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["7 days", "-1d", "1w", "", "h"])
def test_a_bad_age_is_a_command_error(text):
    with pytest.raises(CommandError) as caught:
        # One word: Python 3.12's argparse takes a separate "-1d" for an option, not a value.
        prune(f"--older-than={text}")

    assert str(caught.value) == (
        "--older-than must be a duration such as 7d, 12h, 30m or a number of seconds, "
        f"got {text!r}."
    )


def test_an_unknown_backend_is_a_command_error():
    with pytest.raises(CommandError) as caught:
        prune("--backend", "nope")

    assert str(caught.value) == "No task backend 'nope' in settings.TASKS."


def test_no_progress_line_off_a_terminal(store):
    stderr = io.StringIO()
    prune("--older-than", "1h", stderr=stderr)

    assert stderr.getvalue() == ""


@pytest.mark.django_db(transaction=True)  # the progress thread counts on its own connection
def test_a_terminal_gets_a_progress_line(store, kept):
    stderr = Terminal()

    prune("--older-than", "1h", stderr=stderr)

    written = stderr.getvalue()
    assert written.startswith("\r\x1b[Kpruning: deleted 0/4")
    assert written.endswith("\r\x1b[Kpruning: deleted 4/4\n")
    assert kept(store) == {"ok_10m"}

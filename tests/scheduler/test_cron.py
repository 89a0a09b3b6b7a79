"""tandem.scheduler.cron: next run times in a schedule's time zone, across daylight saving
changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tandem.scheduler.cron import Cron, CronError, zone_named

PARIS = zone_named("Europe/Paris")
NEW_YORK = zone_named("America/New_York")
UTC_ZONE = zone_named("UTC")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_next_runs_in_utc():
    cron = Cron.parse("*/15 * * * *")

    assert cron.upcoming(utc(2030, 1, 1, 12, 7, 30), UTC_ZONE, 3) == [
        utc(2030, 1, 1, 12, 15),
        utc(2030, 1, 1, 12, 30),
        utc(2030, 1, 1, 12, 45),
    ]


def test_after_is_strictly_after_even_within_the_tick_second():
    cron = Cron.parse("0 * * * *")

    assert cron.after(utc(2030, 1, 1, 12, 0, 0), UTC_ZONE) == utc(2030, 1, 1, 13)
    assert cron.after(utc(2030, 1, 1, 12, 0, 0).replace(microsecond=1), UTC_ZONE) == utc(
        2030, 1, 1, 13
    )
    assert cron.after(utc(2030, 1, 1, 11, 59, 59).replace(microsecond=999999), UTC_ZONE) == utc(
        2030, 1, 1, 12
    )


def test_the_same_local_time_is_another_utc_time_in_summer():
    cron = Cron.parse("0 3 * * *")

    assert cron.after(utc(2030, 1, 15), PARIS) == utc(2030, 1, 15, 2)  # CET, UTC+1
    assert cron.after(utc(2030, 7, 15), PARIS) == utc(2030, 7, 15, 1)  # CEST, UTC+2
    assert cron.after(utc(2030, 7, 15), NEW_YORK) == utc(2030, 7, 15, 7)  # EDT, UTC-4


def test_a_time_the_spring_change_skips_fires_once_at_the_first_time_that_exists():
    """Paris, 30 March 2025: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day."""
    cron = Cron.parse("30 2 * * *")

    assert cron.upcoming(utc(2025, 3, 28, 12), PARIS, 4) == [
        utc(2025, 3, 29, 1, 30),  # 02:30 CET
        utc(2025, 3, 30, 1, 0),  # 03:00 CEST, the first minute after the gap
        utc(2025, 3, 31, 0, 30),  # 02:30 CEST
        utc(2025, 4, 1, 0, 30),
    ]


def test_a_time_the_autumn_change_repeats_fires_once():
    """Paris, 26 October 2025: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice."""
    cron = Cron.parse("30 2 * * *")

    assert cron.upcoming(utc(2025, 10, 25, 12), PARIS, 2) == [
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST, the first occurrence only
        utc(2025, 10, 27, 1, 30),  # 02:30 CET
    ]


def test_an_hourly_schedule_fires_every_real_hour_through_the_autumn_change():
    cron = Cron.parse("0 * * * *")

    # 02:00 CEST and 02:00 CET are an hour apart: both are ticks.
    assert cron.upcoming(utc(2025, 10, 25, 23, 30), PARIS, 4) == [
        utc(2025, 10, 26, 0),
        utc(2025, 10, 26, 1),
        utc(2025, 10, 26, 2),
        utc(2025, 10, 26, 3),
    ]


def test_latest_is_the_newest_tick_at_or_before_a_moment():
    cron = Cron.parse("30 2 * * *")

    assert cron.latest(utc(2025, 3, 30, 1, 0), PARIS) == utc(2025, 3, 30, 1, 0)
    assert cron.latest(utc(2025, 3, 30, 0, 59, 59), PARIS) == utc(2025, 3, 29, 1, 30)
    assert cron.latest(utc(2025, 3, 30, 5).replace(microsecond=5), PARIS) == utc(2025, 3, 30, 1)


def test_between_lists_the_ticks_of_a_window_oldest_first_and_keeps_the_newest():
    cron = Cron.parse("0 * * * *")
    start, end = utc(2030, 1, 1, 0), utc(2030, 1, 1, 5)

    assert cron.between(start, end, UTC_ZONE, 100) == (
        [utc(2030, 1, 1, hour) for hour in (1, 2, 3, 4, 5)],  # start excluded, end included
        False,
    )
    assert cron.between(start, end, UTC_ZONE, 2) == (
        [utc(2030, 1, 1, 4), utc(2030, 1, 1, 5)],
        True,
    )
    assert cron.between(end, end, UTC_ZONE, 5) == ([], False)


@pytest.mark.parametrize(
    ("alias", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_aliases(alias, fields):
    cron = Cron.parse(alias)

    assert (cron.expression, cron.fields) == (alias, fields)


def test_named_days_and_months():
    cron = Cron.parse("0 9 * JAN-MAR MON-FRI")

    # 1 January 2030 is a Tuesday; 5 and 6 January are a weekend.
    assert cron.upcoming(utc(2030, 1, 4, 12), UTC_ZONE, 2) == [
        utc(2030, 1, 7, 9),
        utc(2030, 1, 8, 9),
    ]


def test_errors_are_predicates_about_the_value():
    with pytest.raises(CronError) as caught:
        Cron.parse("* * * * * *")
    assert str(caught.value) == (
        "has 6 field(s); a cron expression has 5 (minute hour day-of-month month day-of-week)"
    )
    with pytest.raises(CronError) as caught:
        zone_named("Mars/Olympus")
    assert str(caught.value).startswith("is not a known time zone;")

"""Cron expressions in a time zone: when a schedule fires (a thin layer over ``cronsim``).

Five fields — minute, hour, day of month, month, day of week — or one of the aliases
``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``, ``@yearly`` (``@annually``).
Times are computed in the schedule's zone, so ``0 3 * * *`` in ``Europe/Paris`` is 03:00 Paris
time in winter and in summer. Across daylight saving time, as Debian's cron does for an
expression with a fixed minute and hour: a time the spring change skips fires at the first
minute that exists after it (``30 2 * * *`` fires at 03:00 that day), and a time the autumn
change repeats fires once, at its first occurrence. Every instant returned is in UTC, without
microseconds: equal ticks are equal whichever process computed them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = "minute hour day-of-month month day-of-week"


class CronError(ValueError):
    """An expression or time zone that cannot be used.

    The message is a predicate to put after the value, e.g. ``is not a known time zone; …``:
    callers write ``f"{key} = {value!r} {error}."``.
    """


def zone_named(name: object) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. ``"Europe/Paris"``); ``CronError`` when unknown."""
    if not isinstance(name, str) or not name:
        raise CronError("is not a time zone name (a string such as 'Europe/Paris')")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(
            "is not a known time zone; use an IANA name such as 'Europe/Paris' or 'UTC' "
            "(install the tzdata package where the system has no zone database)"
        ) from None


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed, valid cron expression (``Cron.parse``), evaluated in any zone."""

    expression: str  # as written
    fields: str  # the five fields it stands for

    @classmethod
    def parse(cls, expression: object) -> Cron:
        if not isinstance(expression, str) or not expression.strip():
            raise CronError("is not a cron expression (a string such as '0 3 * * *')")
        text = expression.strip()
        fields = ALIASES.get(text.lower(), text)
        if fields.startswith("@"):
            raise CronError(f"is not a known alias; use one of {', '.join(sorted(ALIASES))}")
        count = len(fields.split())
        if count != 5:
            raise CronError(f"has {count} field(s); a cron expression has 5 ({FIELDS})")
        try:
            CronSim(fields, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise CronError(f"is not a valid cron expression ({exc})") from None
        return cls(expression=text, fields=fields)

    def after(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """The first tick strictly after ``moment`` (None when none comes in 50 years)."""
        if moment.microsecond:
            moment = moment.replace(microsecond=0)  # the tick at the whole second is past
        try:
            return _utc(next(CronSim(self.fields, moment.astimezone(zone))))
        except StopIteration:
            return None

    def upcoming(self, moment: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
        """The next ``count`` ticks after ``moment``, in order."""
        ticks: list[datetime] = []
        iterator = CronSim(self.fields, moment.replace(microsecond=0).astimezone(zone))
        for tick in iterator:
            if len(ticks) >= count:
                break
            ticks.append(_utc(tick))
        return ticks

    def latest(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """The most recent tick at or before ``moment`` (None when none in 50 years)."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        try:
            return _utc(next(CronSim(self.fields, start.astimezone(zone), reverse=True)))
        except StopIteration:
            return None

    def between(
        self, start: datetime, end: datetime, zone: ZoneInfo, limit: int
    ) -> tuple[list[datetime], bool]:
        """The ticks in ``(start, end]``, oldest first — the newest ``limit`` of them — and
        whether older ones were left out."""
        newest_first: list[datetime] = []
        origin = end.replace(microsecond=0) + timedelta(seconds=1)
        for tick in CronSim(self.fields, origin.astimezone(zone), reverse=True):
            moment = _utc(tick)
            if moment <= start:
                return newest_first[::-1], False
            if len(newest_first) == limit:
                return newest_first[::-1], True
            newest_first.append(moment)
        return newest_first[::-1], False


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


__all__ = ["ALIASES", "Cron", "CronError", "zone_named"]

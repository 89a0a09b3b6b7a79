"""Each schedule of a backend, where it stopped and when it runs next (``tandem schedule``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tandem.backends.base import TandemBackend
from tandem.conf import ScheduleConfig
from tandem.scheduler.registry import schedules_for


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleView:
    """One schedule as the command shows it."""

    config: ScheduleConfig
    last_tick: datetime | None
    next_runs: tuple[datetime, ...]

    def as_json(self) -> dict[str, Any]:
        config = self.config
        return {
            "name": config.name,
            "task": config.task,
            "cron": config.cron.expression,
            "timezone": config.zone.key,
            "catch_up": config.catch_up,
            "args": list(config.args),
            "kwargs": dict(config.kwargs),
            "defined_by": config.source,
            "last_tick": self.last_tick.isoformat() if self.last_tick else None,
            "next_runs": [moment.isoformat() for moment in self.next_runs],
        }


def views(backend: TandemBackend, now: datetime, count: int) -> list[ScheduleView]:
    """Every schedule of ``backend``: its last recorded tick and its next ``count`` runs."""
    result = []
    for config in schedules_for(backend.tandem_options):
        result.append(
            ScheduleView(
                config=config,
                last_tick=backend.broker.last_tick(config.name),
                next_runs=tuple(config.cron.upcoming(now, config.zone, count)),
            )
        )
    return result


__all__ = ["ScheduleView", "views"]

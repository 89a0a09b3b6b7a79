"""The scheduler a supervisor steps: cron ticks -> unique tick rows -> enqueued tasks.

Every supervisor runs one (unless ``--no-schedule`` or ``OPTIONS["run_schedules"] = False``), and
each computes the same ticks: ``broker.fire_tick()`` records a tick and pushes its task in one
atomic write, and a tick already recorded pushes nothing, so each tick enqueues exactly once
however many supervisors run.

Between ticks the scheduler costs one comparison per step (``due(now)``); the supervisor sleeps
until ``next_at`` at the latest.

Where a schedule stopped is read from the store once (``broker.last_tick``): a schedule never
fired before starts from now — history is not caught up. Ticks that passed while no supervisor
ran, or that are more than ``MISSED_AFTER`` late, are *missed*, and the schedule's ``catch_up``
decides: ``"one"`` runs the task once, for the newest missed tick; ``"none"`` skips them;
``"all"`` runs one task per missed tick, oldest first — the newest ``MAX_CATCH_UP`` of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.exceptions import ImproperlyConfigured
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued

from tandem import wakeup
from tandem.backends.base import TandemBackend, resolve_task
from tandem.brokers.base import Broker
from tandem.conf import ScheduleConfig
from tandem.exceptions import TaskNotRunnable
from tandem.scheduler.registry import schedules_for
from tandem.tasks import AnyTask

logger = logging.getLogger("tandem.scheduler")

#: A tick handled later than this after its time counts as missed (``catch_up`` applies). The
#: supervisor wakes for each tick, so an on-time tick is normally fired within milliseconds.
MISSED_AFTER = timedelta(seconds=60)
#: ``catch_up="all"`` runs at most this many missed ticks of one schedule: the newest.
MAX_CATCH_UP = 100
#: How long fired ticks are kept (the newest one always is): bounds the tick table.
TICK_HISTORY = timedelta(days=7)
#: The errors that make a tick unrunnable however often it is tried (logged, the tick skipped).
UNRUNNABLE = (TaskNotRunnable, InvalidTask, ImproperlyConfigured, TypeError, ValueError)

_DUE_NOW = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fired:
    """One tick this scheduler handled."""

    name: str
    tick_at: datetime
    #: The enqueued task's id (an active unique task's when it was still running); None when
    #: the tick was already recorded by another supervisor, or could not be enqueued (``error``).
    task_id: str | None
    error: str | None = None


@dataclass(slots=True)
class _Entry:
    config: ScheduleConfig
    zone: ZoneInfo
    #: Every tick up to here is handled; None until the store was asked where the schedule stopped.
    done_until: datetime | None = None
    next_at: datetime | None = None


class Scheduler:
    """Fires the due ticks of a backend's schedules; ``due(now)`` then ``run(now)`` each step."""

    def __init__(
        self,
        backend: TandemBackend,
        schedules: Sequence[ScheduleConfig],
        broker: Broker | None = None,
    ) -> None:
        self.backend = backend
        self.broker = broker or backend.broker
        self._entries = [_Entry(config=c, zone=c.zone) for c in schedules]
        self._tasks: dict[str, AnyTask] = {}
        self._next_at: datetime | None = _DUE_NOW if self._entries else None

    @classmethod
    def for_backend(cls, backend: TandemBackend, broker: Broker | None = None) -> Scheduler | None:
        """The backend's scheduler, or None when it has no schedules."""
        schedules = schedules_for(backend.tandem_options)
        return cls(backend, schedules, broker) if schedules else None

    @property
    def schedules(self) -> tuple[ScheduleConfig, ...]:
        return tuple(entry.config for entry in self._entries)

    @property
    def next_at(self) -> datetime | None:
        """When ``run()`` next has work (None: never again)."""
        return self._next_at

    def due(self, now: datetime) -> bool:
        return self._next_at is not None and now >= self._next_at

    def run(self, now: datetime) -> list[Fired]:
        """Fire every due tick. A store error propagates and the same ticks are tried again at
        the next call; a tick whose task cannot be enqueued is logged and skipped."""
        fired: list[Fired] = []
        for entry in self._entries:
            if entry.done_until is None or (entry.next_at is not None and now >= entry.next_at):
                fired += self._run_entry(entry, now)
        self._next_at = min((e.next_at for e in self._entries if e.next_at), default=None)
        return fired

    # -- one schedule --------------------------------------------------------------------------

    def _run_entry(self, entry: _Entry, now: datetime) -> list[Fired]:
        config = entry.config
        if entry.done_until is None:
            last = self.broker.last_tick(config.name)
            if last is None:
                logger.info("schedule %r starts now (%s)", config.name, config.cron.expression)
            entry.done_until = last or now
        fired = [self._fire(entry, tick) for tick in self._due_ticks(entry, now)]
        entry.done_until = now
        entry.next_at = config.cron.after(now, entry.zone)
        return fired

    def _due_ticks(self, entry: _Entry, now: datetime) -> list[datetime]:
        config, cron, zone = entry.config, entry.config.cron, entry.zone
        assert entry.done_until is not None
        since = entry.done_until
        if config.catch_up == "all":
            ticks, more = cron.between(since, now, zone, MAX_CATCH_UP)
            if more:
                logger.warning(
                    "schedule %r missed more than %d ticks since %s; running the newest %d "
                    "(catch_up='all')",
                    config.name,
                    MAX_CATCH_UP,
                    since.isoformat(),
                    MAX_CATCH_UP,
                )
            return ticks
        latest = cron.latest(now, zone)
        if latest is None or latest <= since:
            return []
        first = cron.after(since, zone)
        earlier_missed = first is not None and first < latest
        late = now - latest > MISSED_AFTER
        if config.catch_up == "none":
            if late or earlier_missed:
                logger.info(
                    "schedule %r skipped missed tick(s) since %s (catch_up='none')",
                    config.name,
                    since.isoformat(),
                )
            return [] if late else [latest]
        if late or earlier_missed:
            logger.info(
                "schedule %r missed tick(s) since %s; running once for %s (catch_up='one')",
                config.name,
                since.isoformat(),
                latest.isoformat(),
            )
        return [latest]

    def _fire(self, entry: _Entry, tick: datetime) -> Fired:
        config = entry.config
        try:
            task = self._task(config)
            new = self.backend._new_task(task, config.args, dict(config.kwargs))
        except UNRUNNABLE as exc:
            logger.error(
                "schedule %r could not enqueue %s for its tick at %s: %s",
                config.name,
                config.task,
                tick.isoformat(),
                exc,
            )
            return Fired(name=config.name, tick_at=tick, task_id=None, error=str(exc))
        stored = self.broker.fire_tick(config.name, tick, new)
        if stored is None:
            return Fired(name=config.name, tick_at=tick, task_id=None)
        # The tick rows are the exactly-once record; older than TICK_HISTORY they only grow.
        self.broker.prune_ticks(config.name, tick - TICK_HISTORY)
        logger.info("schedule %r enqueued %s for %s", config.name, config.task, tick.isoformat())
        if stored == new.id:
            task_enqueued.send(type(self.backend), task_result=self.backend._result_for(task, new))
        self.broker.notify([new.queue_name])  # other processes (e.g. PostgreSQL NOTIFY)
        wakeup.notify(self.backend.alias, new.queue_name)  # this process's supervisors
        return Fired(name=config.name, tick_at=tick, task_id=stored)

    def _task(self, config: ScheduleConfig) -> AnyTask:
        if config.task not in self._tasks:
            self._tasks[config.task] = resolve_task(config.task)
        return self._tasks[config.task]


__all__ = ["MAX_CATCH_UP", "MISSED_AFTER", "TICK_HISTORY", "Fired", "Scheduler"]

"""Result retention: delete finished tasks after a while.

Two ways, both through ``broker.prune`` (the database store deletes in batches of 1,000 rows, one
short transaction each):

- ``OPTIONS["retention"] = {"successful": seconds, "failed": seconds}``: every supervisor prunes
  at heartbeat time, at most once per ``RETENTION_INTERVAL`` (``Retention.apply``);
- ``manage.py tandem prune``: by hand or from cron (``tandem.cli.prune``).

Pruning runs in the supervisor's loop, right after it renewed its leases: a first run over a very
large backlog (hundreds of thousands of rows) holds the loop for its duration, so run
``tandem prune`` once by hand before turning retention on for an old store.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from tandem.brokers.base import FAILED, SUCCESSFUL, Broker
from tandem.conf import RetentionConfig

logger = logging.getLogger("tandem.retention")

#: How often a supervisor applies ``OPTIONS["retention"]``.
RETENTION_INTERVAL = timedelta(minutes=10)


class Retention:
    """``OPTIONS["retention"]`` for one supervisor: ``apply(now)`` at each heartbeat."""

    def __init__(
        self, broker: Broker, config: RetentionConfig, interval: timedelta = RETENTION_INTERVAL
    ) -> None:
        self.broker = broker
        self.config = config
        self.interval = interval
        self._next_at: datetime | None = None
        self.deleted = 0

    def apply(self, now: datetime) -> int:
        """Prune what the settings no longer keep, unless that was done less than ``interval``
        ago; return how many tasks were deleted."""
        if self._next_at is not None and now < self._next_at:
            return 0
        self._next_at = now + self.interval  # a store error is not retried before then either
        deleted = 0
        for status, seconds in ((SUCCESSFUL, self.config.successful), (FAILED, self.config.failed)):
            if seconds is not None:
                deleted += self.broker.prune(now - timedelta(seconds=seconds), [status])
        if deleted:
            logger.info("retention deleted %d finished task(s)", deleted)
        self.deleted += deleted
        return deleted


__all__ = ["RETENTION_INTERVAL", "Retention"]

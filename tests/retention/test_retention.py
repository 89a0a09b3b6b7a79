"""OPTIONS["retention"]: supervisors prune at heartbeat time, at most every ten minutes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tandem.brokers.base import FAILED, SUCCESSFUL
from tandem.brokers.memory import MemoryBroker
from tandem.conf import RetentionConfig
from tandem.retention import RETENTION_INTERVAL, Retention
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_supervisor_prunes_at_heartbeat_time_at_most_every_ten_minutes(
    harness: Harness, tandem_settings, finished, kept
):
    tandem_settings(retention={"successful": 3600}, poll_interval=3600)  # failed: kept forever
    clock = FrozenClock()
    now = clock()
    ids = {
        "old_ok": finished(SUCCESSFUL, now - timedelta(hours=2)),
        "recent_ok": finished(SUCCESSFUL, now - timedelta(minutes=30)),
        "old_failed": finished(FAILED, now - timedelta(days=30)),
    }
    supervisor = harness.supervisor(clock=clock, workers=1)

    supervisor.step()  # the first heartbeat
    assert kept(ids) == {"recent_ok", "old_failed"}
    assert supervisor.retention.deleted == 1

    ids["late_ok"] = finished(SUCCESSFUL, now - timedelta(hours=3))
    clock.advance(5 * 60)
    supervisor.step()  # a heartbeat, but retention ran five minutes ago
    assert kept(ids) == {"recent_ok", "old_failed", "late_ok"}

    clock.advance(5 * 60)
    supervisor.step()  # ten minutes: pruned again ("recent_ok" is 40 minutes old)
    assert kept(ids) == {"recent_ok", "old_failed"}

    clock.advance(50 * 60)
    supervisor.step()
    assert kept(ids) == {"old_failed"}
    assert supervisor.retention.deleted == 3


def test_failed_tasks_have_their_own_retention(harness: Harness, tandem_settings, finished, kept):
    tandem_settings(retention={"failed": 60, "successful": None})
    clock = FrozenClock()
    now = clock()
    ids = {
        "old_ok": finished(SUCCESSFUL, now - timedelta(days=30)),
        "old_failed": finished(FAILED, now - timedelta(minutes=2)),
        "new_failed": finished(FAILED, now - timedelta(seconds=30)),
    }

    harness.supervisor(clock=clock, workers=1).step()

    assert kept(ids) == {"old_ok", "new_failed"}


def test_without_retention_nothing_is_pruned(harness: Harness, finished, kept):
    clock = FrozenClock()
    ids = {"ancient": finished(SUCCESSFUL, clock() - timedelta(days=3650))}
    supervisor = harness.supervisor(clock=clock, workers=1)

    supervisor.step()

    assert supervisor.retention is None
    assert kept(ids) == {"ancient"}


class CountingBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__("default")
        self.prunes: list[tuple[object, tuple[str, ...]]] = []

    def prune(self, finished_before, statuses):
        self.prunes.append((finished_before, tuple(statuses)))
        return super().prune(finished_before, statuses)


@pytest.mark.django_db(transaction=False)
def test_retention_asks_the_store_once_per_interval_and_status():
    broker = CountingBroker()
    retention = Retention(broker, RetentionConfig(successful=3600, failed=86400))
    clock = FrozenClock()
    start = clock()

    retention.apply(start)
    retention.apply(start + RETENTION_INTERVAL - timedelta(microseconds=1))
    retention.apply(start + RETENTION_INTERVAL)

    later = start + RETENTION_INTERVAL
    assert broker.prunes == [
        (start - timedelta(hours=1), (SUCCESSFUL,)),
        (start - timedelta(days=1), (FAILED,)),
        (later - timedelta(hours=1), (SUCCESSFUL,)),
        (later - timedelta(days=1), (FAILED,)),
    ]
    assert timedelta(minutes=10) == RETENTION_INTERVAL

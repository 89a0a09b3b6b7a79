"""Faults that once let one task run twice at the same time, each with real worker processes, a
short lease (3 s) and a ledger of when every run was alive:

- a worker whose clock runs 0.9 x lease ahead of the others' (leases are on the store's clock, so
  it recovers nothing that is still held): no task runs twice;
- a worker paused (SIGSTOP, with its pool's children) for 1.5 x lease, then resumed: its tasks are
  recovered and run elsewhere meanwhile, and on resuming it stops its own stale runs at once —
  two live runs of one task overlap at most ``PAUSE_BOUND``;
- a store outage of 0.9 x lease (a TCP proxy between the workers and the store resets every
  connection and refuses new ones): renewals are retried throughout; a run whose lease cannot be
  renewed in time is stopped by its own worker before the lease expires, and runs again after the
  outage — no overlap at all.

Every scenario: 0 lost, nothing left READY or RUNNING, every task run to its end. Bounded: a few
tasks of two lease lengths each; the whole tier takes well under three minutes per database.
"""

from __future__ import annotations

import signal
import sys
import time

import pytest
from django.conf import settings

from tests.faults.proxy import Proxy
from tests.faults.scenario import LEASE, PAUSE_BOUND, Faults, signal_all
from tests.support.processes import family, wait_until
from tests.support.scale import Scale

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

TASKS = 3
SECONDS = 2 * LEASE
EXECUTORS = ["process"] + (
    ["subinterpreter"] if sys.version_info >= (3, 14) and settings.DB_KIND != "mariadb" else []
)
#: Stores shared by hosts (a clock of their own, a TCP port): the run's PostgreSQL or MariaDB,
#: and Redis once (in the SQLite run). SQLite is one host: no skew, no network.
NETWORKED = [
    pytest.param("database", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("database", marks=pytest.mark.mariadb, id="mariadb"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
]
ANY_STORE = ["database", pytest.param("redis", marks=pytest.mark.redis, id="redis")]


@pytest.mark.parametrize("scale", NETWORKED, indirect=True)
def test_a_worker_whose_clock_runs_ahead_takes_no_live_task(scale: Scale) -> None:
    faults = Faults(scale, "process")
    first = faults.worker("on-time")
    ids = faults.enqueue(TASKS, "skew", SECONDS)
    faults.wait_started(TASKS, alive=[first])
    # A second host whose clock is 0.9 x lease ahead: by its clock, every lease of the first
    # worker is expired for most of each heartbeat interval.
    faults.worker("ahead", TANDEM_FAULTS_CLOCK_SKEW=repr(0.9 * LEASE))

    numbers = faults.finish("clock skew", ids, bound=0.0, what=f"clock +{0.9 * LEASE:g}s")
    assert numbers.duplicated_tasks == 0  # nothing was recovered from a live worker


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("scale", ANY_STORE, indirect=True)
def test_a_paused_worker_stops_its_stale_runs_when_it_resumes(scale: Scale, executor: str) -> None:
    faults = Faults(scale, executor)
    paused = faults.worker("paused")
    # Long enough that a stale run left alone would still be running long after the resume.
    ids = faults.enqueue(TASKS, "pause", 4 * LEASE)
    faults.wait_started(TASKS, alive=[paused])
    other = faults.worker("other")

    frozen = family(paused.pid)
    signal_all(frozen, signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        # The leases expire on the store's clock; the other worker recovers and runs the tasks.
        wait_until(
            lambda: sum(len(r) for r in faults.runs().values()) >= 2 * TASKS,
            "the other worker to run the paused worker's tasks",
            timeout=120,  # (a loaded 2-core VM: recovery, then interpreters set up at SCHED_IDLE)
            alive=[other],
        )
        left = 1.5 * LEASE - (time.monotonic() - paused_at)
        if left > 0:
            time.sleep(left)  # the pause lasts 1.5 x lease in all (a duration, not a race)
    finally:
        signal_all(frozen, signal.SIGCONT)

    numbers = faults.finish("SIGSTOP", ids, PAUSE_BOUND, what=f"paused {1.5 * LEASE:g}s")
    assert numbers.duplicated_tasks == TASKS  # each task ran again elsewhere
    assert "stopping task" in paused.stderr, paused.output()


@pytest.mark.parametrize("scale", NETWORKED, indirect=True)
def test_a_store_outage_shorter_than_the_lease_makes_no_second_live_copy(scale: Scale) -> None:
    proxy = Proxy(store_port(scale))
    try:
        faults = Faults(scale, "process")
        through = proxied_env(scale, proxy)
        first = faults.worker("first", **through)
        ids = faults.enqueue(TASKS, "outage", SECONDS)
        faults.wait_started(TASKS, alive=[first])
        faults.worker("second", **through)

        proxy.cut()
        time.sleep(0.9 * LEASE)  # the outage itself: a duration, not a race
        proxy.restore()

        numbers = faults.finish("store outage", ids, bound=0.0, what=f"{0.9 * LEASE:g}s outage")
        assert numbers.overlapping_pairs == 0
        assert proxy.resets > 0
    finally:
        proxy.close()


@pytest.mark.parametrize("scale", NETWORKED, indirect=True)
def test_a_silent_store_outage_makes_no_second_copy_and_every_worker_drains(
    scale: Scale,
) -> None:
    """The network goes silent: open connections neither answer nor reset, for good. Without the
    store watch, every call on them blocks forever: no task finishes, no worker drains.

    The second worker starts just before the silence: its banner's read of the paused queues
    met it, unguarded and before the signal handlers, and the worker died of the drain's
    SIGTERM (-15) in about half the runs on Python 3.12; the banner's read is guarded now."""
    proxy = Proxy(store_port(scale))
    try:
        faults = Faults(scale, "process")
        through = proxied_env(scale, proxy)
        first = faults.worker("first", **through)
        ids = faults.enqueue(TASKS, "silent", SECONDS)
        faults.wait_started(TASKS, alive=[first])
        faults.worker("second", **through)

        proxy.blackhole()
        time.sleep(0.9 * LEASE)  # the outage itself: a duration, not a race
        proxy.restore()

        numbers = faults.finish("silent outage", ids, bound=0.0, what=f"{0.9 * LEASE:g}s silence")
        assert numbers.overlapping_pairs == 0
        assert proxy.silenced > 0
    finally:
        proxy.close()


def store_port(scale: Scale) -> int:
    if scale.env["TANDEM_SCALE_STORE"] == "redis":
        return int(settings.TANDEM_TEST_REDIS["url"].rsplit(":", 1)[1].split("/")[0])
    return int(settings.DATABASES["default"]["PORT"])


def proxied_env(scale: Scale, proxy: Proxy) -> dict[str, str]:
    """The environment that points a worker's store connections at ``proxy``."""
    if scale.env["TANDEM_SCALE_STORE"] == "redis":
        return {"TANDEM_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
    if settings.DB_KIND == "postgres":
        return {"TANDEM_PG_PORT": str(proxy.port)}
    return {"TANDEM_MARIADB_PORT": str(proxy.port)}

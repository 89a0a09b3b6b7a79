"""The store crashes mid-run — PostgreSQL stopped with ``pg_ctl -m immediate`` (no shutdown
checkpoint; the WAL is replayed at the next start), MariaDB killed with ``SIGKILL`` (InnoDB
recovers) — and is started again: the workers' calls fail, they back off and reconnect; an
attempt whose lease could not be renewed in time is stopped by its own worker before the lease
expires, and runs again once the lease has expired on the store's clock.

A private server per test (``tests/support/servers.py``), never the shared one; two workers, the
fault tier's lease (3 s) and ledger. Every scenario: 0 lost, nothing left READY or RUNNING, no
overlap of two live runs of one task, and every worker drains and exits 0 on one SIGTERM.
Bounded: 6 tasks of 6 s; in the chaos group (one heavy tier test at a time under xdist).
"""

from __future__ import annotations

import time

import pytest

from tests.faults.scenario import LEASE, Faults
from tests.support.scale import Scale, store_retries
from tests.support.servers import PrivateMariaDB, PrivatePostgres, PrivateServer

pytestmark = [pytest.mark.process, pytest.mark.xdist_group("chaos")]

TASKS = 6
SECONDS = 2 * LEASE
CRASHING = [
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres-immediate"),
    pytest.param("mariadb", marks=pytest.mark.mariadb, id="mariadb-sigkill"),
]


def crash(server: PrivateServer) -> None:
    assert isinstance(server, PrivatePostgres | PrivateMariaDB)
    server.crash()


@pytest.mark.parametrize("private_scale", CRASHING, indirect=True)
def test_the_store_crashing_mid_run_loses_nothing_and_runs_no_task_twice_at_once(
    private_scale: tuple[Scale, PrivateServer],
) -> None:
    scale, server = private_scale
    faults = Faults(scale, "process")
    workers = [faults.worker("first"), faults.worker("second")]
    ids = faults.enqueue(TASKS, "crash", SECONDS)
    faults.wait_started(TASKS, alive=workers)

    crashed_at = time.monotonic()
    crash(server)
    time.sleep(0.9 * LEASE)  # the store stays down this long: a duration, not a race
    server.start()
    down = time.monotonic() - crashed_at

    how = "immediate stop" if isinstance(server, PrivatePostgres) else "SIGKILL"
    numbers = faults.finish(f"store {how}", ids, bound=0.0, what=f"down {down:.1f}s")
    assert numbers.overlapping_pairs == 0
    assert all(store_retries(worker) for worker in workers)  # each saw the crash

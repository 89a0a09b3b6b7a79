"""``kill -9`` of one of four workers mid-run: the others recover its tasks once their leases expire
and run them; nothing is lost and nothing stays RUNNING. The registry shows who is alive: the
survivors keep heartbeating, and they remove the silent victim from it (after three leases).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.processes import wait_until
from tests.support.scale import (
    STORES,
    WORKER_LOST,
    Scale,
    check_every_task_succeeded,
    start_workers,
    stop_workers,
    worker_id,
)

# django_db: the database variant uses the test database (and the Redis one needs none).
pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

WORKERS = 4
TASKS = 3000
#: Seconds per task: with no-op tasks one worker can claim most of the queue before the victim
#: has run its share, and on a quiet machine the tasks ran out before the kill. A short sleep
#: keeps every worker's threads busy, so claims spread over the workers and the run lasts.
SECONDS = 0.02
#: Short, so recovery comes 2/3 to 4/3 of it after the kill; long enough that a busy machine does
#: not delay a live worker's heartbeat past it.
LEASE = "5"


@pytest.mark.parametrize("scale", STORES, indirect=True)
def test_a_killed_workers_tasks_are_recovered_by_the_others(scale: Scale) -> None:
    workers = start_workers(scale, WORKERS, TANDEM_TEST_LEASE=LEASE)
    victim, survivors = workers[0], workers[1:]
    victim_id = worker_id(victim)
    ids = scale.enqueue(TASKS, "kill", SECONDS)

    # Mid-run: the victim has run some tasks and, with READY tasks left, holds a batch claimed.
    wait_until(
        lambda: scale.ledger.per_process()[victim.pid] >= 50 and scale.ledger.total() >= TASKS // 5,
        "the victim to be busy",
        timeout=120,
        alive=workers,
    )
    assert scale.ledger.total() < TASKS * 0.9, "the tasks ran out before the kill; use more"
    victim.kill()  # SIGKILL: no release, no unregistering; its leases just stop being renewed
    killed_at = datetime.now(UTC)

    wait_until(
        lambda: len(scale.ledger.runs()) >= TASKS,
        f"every one of {TASKS} tasks to run",
        timeout=120,
        alive=survivors,
    )
    assert scale.wait_finished(TASKS) == {"SUCCESSFUL": TASKS}
    # Nobody unregistered the victim: the survivors forget it once it has been silent for three
    # leases, while their own heartbeats go on.
    registry = scale.registry_without(victim_id)
    survivor_ids = {worker_id(w) for w in survivors}
    assert set(registry) == survivor_ids, registry
    assert all(datetime.fromisoformat(beat) > killed_at for beat in registry.values()), registry
    stop_workers(survivors)

    rows = scale.snapshot(ids)
    outcome = check_every_task_succeeded(ids, rows, scale.ledger, "kill")
    # The victim's tasks: finished by it before the kill (one attempt, no error), or recovered
    # with a WorkerLost error naming it and run again, to the end, by a survivor.
    held = [row for row in rows if row is not None and victim_id in row["worker_ids"]]
    recovered = [row for row in held if row["worker_ids"] != [victim_id]]
    assert recovered, "the victim held no task when it was killed"
    for row in held:
        if row["worker_ids"] == [victim_id]:
            assert row["errors"] == [], row
            continue
        assert row["worker_ids"][-1] in survivor_ids, row
        lost = [
            trace
            for error, trace in zip(row["errors"], row["tracebacks"], strict=True)
            if error == WORKER_LOST and f"worker '{victim_id}' stopped renewing its lease" in trace
        ]
        assert lost, row
    assert all(row in outcome.recovered for row in recovered)

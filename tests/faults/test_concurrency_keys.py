"""A concurrency limit of one across two worker processes, and the holder killed with SIGKILL
mid-run: never two runs of the key alive at once (the ledger's ticks show when each run lived),
the killed holder's slot is freed when its lease is recovered, and every task ends SUCCESSFUL."""

from __future__ import annotations

import signal
from itertools import combinations

import pytest

from tests.faults import ledger
from tests.faults.scenario import Faults
from tests.faults.tasks import TICK
from tests.support.processes import family
from tests.support.scale import Scale

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

TASKS = 4
SECONDS = 1.0


@pytest.mark.parametrize(
    "scale", ["database", pytest.param("redis", marks=pytest.mark.redis, id="redis")], indirect=True
)
def test_one_slot_holds_across_two_workers_and_a_killed_holder(scale: Scale) -> None:
    faults = Faults(scale, "process")
    first = faults.worker("first")
    second = faults.worker("second")
    ids = faults.enqueue(TASKS, "keyed", SECONDS, task="hold_keyed")
    faults.wait_started(1, alive=[first, second])

    [run] = [run for runs in faults.runs().values() for run in runs]
    holder = next(w for w in (first, second) if run.pid in family(w.pid))
    holder.process.send_signal(signal.SIGKILL)  # its pool's children end with it
    holder.process.wait()
    faults.workers.remove(holder)

    faults.finish("concurrency key, holder killed", ids, bound=0.0, what="limit 1, 1 kill -9")
    runs = [run for key_runs in faults.runs().values() for run in key_runs]
    assert len(runs) >= TASKS + 1  # the killed run, then every task to its end
    together = [(a, b) for a, b in combinations(runs, 2) if both_alive(a, b)]
    assert together == [], together


def both_alive(a: ledger.Run, b: ledger.Run) -> bool:
    """Whether the two runs lived at the same time: their spans from start to end intersect (a
    killed run's span ends a tick after its last tick: it may have lived that long). Strict, not
    the per-task check's one-tick tolerance: one run may start the instant another ended."""

    def span(run: ledger.Run) -> tuple[float, float]:
        return run.started, run.ended if run.ended is not None else run.alive[-1] + TICK

    (a_start, a_end), (b_start, b_end) = span(a), span(b)
    return max(a_start, b_start) < min(a_end, b_end)

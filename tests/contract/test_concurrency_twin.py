"""The database store against the memory twin, with concurrency keys in the mix: random runs of
every broker call (``tests/redis/test_twin.py``'s, a third of the tasks keyed with limits 1 and
2, ``"wait"`` and ``"discard"``) must give the same answers and leave the same tasks."""

from __future__ import annotations

import pytest

from tandem.brokers.database import DatabaseBroker
from tests.redis.test_twin import Run


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(6))
def test_random_runs_with_concurrency_keys_match_the_memory_twin(seed: int) -> None:
    run = Run(
        seed,
        DatabaseBroker("default", store_clock=False),  # type: ignore[arg-type]
        DatabaseBroker("other", store_clock=False),  # type: ignore[arg-type]
    )
    for step in range(1, 151):
        run.step()
        if step % 5 == 0:
            run.check_every_task()

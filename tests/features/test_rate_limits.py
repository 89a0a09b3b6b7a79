"""Rate limits end to end: a real supervisor with free workers starts at most N tasks of a
rate-limited task (or of a rate-limited pool) per window; the rest wait READY, no attempt
counted, and start as the window moves on; the status report and the metrics show the wait.

(The broker calls behind them are in tests/contract/test_rate_limits.py, on every store.)
"""

from __future__ import annotations

import pytest
from django.tasks import task_backends

from tandem.brokers.base import READY, RUNNING, SUCCESSFUL
from tandem.cli import status as status_command
from tandem.monitoring import status
from tests.features.tasks import rated_add
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness
from tests.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)


def stored(result_id: str):  # type: ignore[no-untyped-def]
    return task_backends["default"].broker.get(result_id)  # type: ignore[attr-defined]


def test_a_task_rate_starts_at_most_n_per_window_and_others_run_meanwhile(
    harness: Harness,
) -> None:
    rated = [rated_add.enqueue(n, n) for n in range(5)]
    plain = add.enqueue(1, 1)
    clock = FrozenClock()
    supervisor = harness.supervisor(workers=4, clock=clock)

    assert supervisor.step() == 3  # two rated starts and the plain task; two workers stay free
    assert [stored(r.id).status for r in rated] == [RUNNING, RUNNING, READY, READY, READY]
    assert stored(plain.id).status == RUNNING
    assert all(stored(r.id).attempts == 0 for r in rated[2:])  # waiting counts no attempt
    harness.wait_for_outcomes(supervisor, 3)
    supervisor.step()  # settles the three; the window is still full
    assert [stored(r.id).status for r in rated[2:]] == [READY] * 3

    snapshot = status.take(now=clock())
    [wait] = snapshot.rate_limited
    assert (wait.kind, wait.name) == ("task", "tests.features.tasks.rated_add")
    assert "task tests.features.tasks.rated_add: rate limited" in status_command.text(snapshot)

    clock.advance(1)
    supervisor.step()
    assert [stored(r.id).status for r in rated[2:]] == [RUNNING, RUNNING, READY]
    harness.wait_for_outcomes(supervisor, 2)
    clock.advance(1)
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    assert all(stored(r.id).status == SUCCESSFUL for r in rated)
    assert all(stored(r.id).attempts == 1 for r in rated)


def test_a_pool_rate_counts_every_task_of_its_queues(harness: Harness, tandem_settings) -> None:
    tandem_settings(
        pools={"main": {"queues": ["default", "critical", "exports"], "rate_limit": "3/m"}}
    )
    tasks = [add.enqueue(n, n) for n in range(4)]
    clock = FrozenClock()
    supervisor = harness.supervisor(workers=4, clock=clock)

    assert supervisor.step() == 3
    assert stored(tasks[3].id).status == READY
    harness.wait_for_outcomes(supervisor, 3)
    clock.advance(30)
    supervisor.step()
    assert (stored(tasks[3].id).status, stored(tasks[3].id).attempts) == (READY, 0)
    [wait] = status.take(now=clock()).rate_limited
    assert (wait.kind, wait.name) == ("pool", "critical,default,exports")

    clock.advance(30)
    supervisor.step()
    assert stored(tasks[3].id).status == RUNNING
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()


def test_the_pool_option_is_checked(tandem_settings) -> None:
    from django.core.exceptions import ImproperlyConfigured

    tandem_settings(pools={"main": {"queues": ["default"], "rate_limit": "10/x"}})
    with pytest.raises(ImproperlyConfigured) as raised:
        task_backends["default"].tandem_options  # type: ignore[attr-defined]  # noqa: B018
    assert '[\'rate_limit\'] must be "N/s", "N/m" or "N/h"' in str(raised.value)

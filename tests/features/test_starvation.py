"""``starvation_limit``: under a saturating stream of high-priority work, a low-priority task that
has waited past its pool's limit is claimed ahead of the stream."""

from __future__ import annotations

import pytest

from tandem.brokers.base import READY, RUNNING, SUCCESSFUL
from tandem.models import TaskRecord
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness
from tests.tasks import add, noop

pytestmark = pytest.mark.django_db(transaction=True)


def status(result_id: str) -> str:
    return TaskRecord.objects.get(id=result_id).status


@pytest.mark.parametrize(("limit", "starves"), [(60, False), (3600, True)])
def test_an_old_task_is_claimed_ahead_of_a_saturating_stream(
    harness: Harness, tandem_settings, limit: float, starves: bool
) -> None:
    tandem_settings(
        pools={
            "main": {
                "queues": ["default", "critical", "exports"],
                "workers": 1,
                "prefetch": 0,
                "starvation_limit": limit,
            }
        }
    )
    low = noop.using(priority=-10).enqueue()
    stream = [add.using(priority=10).enqueue(n, n) for n in range(2)]
    clock = FrozenClock()
    supervisor = harness.supervisor(clock=clock)

    assert supervisor.step() == 1  # the stream goes first: one worker, highest priority
    assert status(stream[0].id) == RUNNING
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    assert status(stream[1].id) == RUNNING and status(low.id) == READY
    stream.append(add.using(priority=10).enqueue(2, 2))  # the stream never runs dry

    clock.advance(61)  # the low task has now waited past 60 s
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()

    if starves:
        assert (status(low.id), status(stream[2].id)) == (READY, RUNNING)
    else:
        assert (status(low.id), status(stream[2].id)) == (RUNNING, READY)
    assert status(stream[1].id) == SUCCESSFUL


def test_the_pool_option_is_checked(tandem_settings) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.tasks import task_backends

    tandem_settings(pools={"main": {"queues": ["default"], "starvation_limit": 0}})
    with pytest.raises(ImproperlyConfigured) as raised:
        task_backends["default"].tandem_options  # noqa: B018
    assert "['starvation_limit'] must be a finite number > 0, got 0." in str(raised.value)

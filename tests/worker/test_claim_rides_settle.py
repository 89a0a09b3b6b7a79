"""The supervisor's round on PostgreSQL: its settle and the claim after it go in ONE message
(``Supervisor._announce_claim``, ``DatabaseClaims.claim_ahead``), then the ``COMMIT`` — two
round trips where there were three — and every task is still claimed once and settled."""

from __future__ import annotations

import pytest

from tandem.brokers.base import RUNNING, SUCCESSFUL
from tandem.models import TaskRecord
from tests.contract.test_settle_begin import sent
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness
from tests.tasks import add

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_round_with_endings_to_write_settles_and_claims_in_one_message(
    harness: Harness, tandem_settings
) -> None:
    tandem_settings(pools={"default": {"workers": 2, "prefetch": 0, "executor": "thread"}})
    results = [add.enqueue(i, 1) for i in range(5)]
    supervisor = harness.supervisor(workers=2, clock=FrozenClock())
    assert supervisor.step() == 2  # the first claim (and its starvation check)
    harness.wait_for_outcomes(supervisor, 2)

    messages = sent(supervisor.step)

    assert len(messages) == 2, messages
    parts = messages[0].split("; ")
    assert parts[0] == "BEGIN" and parts[1].startswith("UPDATE tandem_taskrecord AS t"), parts
    assert parts[-1].startswith("UPDATE tandem_taskrecord SET"), parts  # the claim rode
    assert messages[1] == "COMMIT"
    statuses = [TaskRecord.objects.get(id=r.id).status for r in results]
    assert statuses == [SUCCESSFUL, SUCCESSFUL, RUNNING, RUNNING, "READY"]
    assert supervisor.in_flight == 2

    for _ in range(10):  # the rest, round after round
        if not supervisor.in_flight:
            break
        harness.wait_for_outcomes(supervisor, supervisor.in_flight)
        supervisor.step()
    assert {TaskRecord.objects.get(id=r.id).status for r in results} == {SUCCESSFUL}
    assert [TaskRecord.objects.get(id=r.id).return_value for r in results] == [1, 2, 3, 4, 5]
    assert supervisor.rejected_writes == 0

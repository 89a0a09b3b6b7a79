"""A pause is stored: it holds across worker restarts until ``tandem resume``, all in real
processes (the commands and the workers)."""

from __future__ import annotations

import signal

import pytest

from tandem.brokers.base import READY, SUCCESSFUL
from tandem.models import TaskRecord
from tests.support.processes import Children, wait_until
from tests.tasks import critical_noop, noop

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def status(result_id: str) -> str:
    return TaskRecord.objects.get(id=result_id).status


def test_a_pause_survives_worker_restarts_until_resumed(children: Children) -> None:
    pause = children.python("-m", "django", "tandem", "pause", "critical", name="pause")
    assert pause.wait() == 0, pause.output()
    assert "Queue 'critical' of backend 'default': paused." in pause.stdout
    # Highest priority and oldest: one worker slot would take it first, were it not paused.
    held = critical_noop.using(priority=10).enqueue()

    for round_ in range(2):  # a worker, then its restart
        worker = children.worker("-w", "1", name=f"worker-{round_}")
        later = noop.enqueue()
        wait_until(
            lambda later=later: status(later.id) == SUCCESSFUL, "the unpaused task", alive=[worker]
        )
        assert status(held.id) == READY
        assert TaskRecord.objects.get(id=held.id).worker_ids == []
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
        assert (
            "  paused: critical (their tasks wait; python manage.py tandem resume critical "
            "starts them)\n" in worker.stdout
        )

    worker = children.worker("-w", "1", name="worker-resumed")  # started while still paused
    resume = children.python("-m", "django", "tandem", "resume", "critical", name="resume")
    assert resume.wait() == 0, resume.output()
    assert "Queue 'critical' of backend 'default': resumed." in resume.stdout
    wait_until(lambda: status(held.id) == SUCCESSFUL, "the resumed task", alive=[worker])
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()

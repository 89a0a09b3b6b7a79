"""``tandem worker`` from the command line: its subinterpreter pool's first worker is the
interpreter started setting up ahead, at ``import tandem`` (``tandem.worker.pools.early``,
adopted by ``tandem.worker.pools.warmup``)."""

from __future__ import annotations

import pytest
from django.tasks import TaskResultStatus

from tests import tasks
from tests.support.pools import needs_subinterpreters
from tests.support.processes import Children

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True), needs_subinterpreters]


def test_tandem_worker_runs_its_first_task_in_the_interpreter_it_started_ahead(
    children: Children,
) -> None:
    placed = tasks.where.enqueue()
    worker = children.python(
        "-m",
        "django",
        "tandem",
        "-v",
        "2",
        "worker",
        "--burst",
        "-w",
        "2",
        TANDEM_TEST_EXECUTOR="subinterpreter",
    )
    assert worker.wait() == 0, worker.output()
    assert "its first worker is the interpreter set up ahead" in worker.stderr, worker.output()
    # Started at ``import tandem``, during ``django.setup()`` (``early``), not after it.
    assert "started during Django's set-up" in worker.stderr, worker.output()
    assert "stopped: 1 task(s) settled." in worker.stdout
    assert "remaining subinterpreters" not in worker.stderr
    placed.refresh()
    assert placed.status == TaskResultStatus.SUCCESSFUL, placed.errors
    assert placed.return_value["interpreter"] != 0

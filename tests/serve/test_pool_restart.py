"""``tandem serve`` whose pool cannot go on in its process (more retired interpreters still stuck
in C calls than the cap): the supervisor releases its tasks and the process must be restarted.
Plain ``serve`` exits 75 with a line that says why and what restarts it; ``serve --supervise``
restarts it, and the restarted server serves the same port and finishes the work.

Real subinterpreters (Python >= 3.14; not MariaDB, whose driver does not load in them): four
``stuck`` tasks block in ``time.sleep`` far past their 5 s timeout, on a pool of one worker:
one worker retires them in turn, and the third retired one breaks the pool (the cap is 2 per
worker).
"""

from __future__ import annotations

import signal
import sys

import pytest
from django.conf import settings

from tandem.models import TaskRecord
from tests.support.pool_tasks import stuck
from tests.support.serving import Servers, answers, wait_until

pytestmark = [
    pytest.mark.process,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        sys.version_info < (3, 14) or settings.DB_KIND == "mariadb",
        reason="subinterpreter pools need Python >= 3.14 (and a driver that loads in them)",
    ),
]

STUCK = 4


def statuses(ids: list[str]) -> list[str]:
    return sorted(TaskRecord.objects.filter(id__in=ids).values_list("status", flat=True))


def test_plain_serve_exits_75_with_a_clear_line(servers: Servers) -> None:
    ids = [stuck.enqueue(120).id for _ in range(STUCK)]
    server, _ = servers.serve(
        "--workers", "1", TANDEM_TEST_EXECUTOR="subinterpreter", name="broken"
    )

    assert server.wait(120) == 75, server.output()
    assert "retired interpreters are still running their tasks (at most 2)" in server.stderr
    assert "its tasks were released: this process must be restarted" in server.stderr
    assert "tandem serve: exiting with status 75 for a restart" in server.stderr
    assert "RUNNING" not in statuses(ids)  # released (READY) or failed at their timeout


def test_serve_supervise_restarts_it_and_the_work_ends(servers: Servers) -> None:
    ids = [stuck.enqueue(120).id for _ in range(STUCK)]
    parent, port = servers.serve(
        "--supervise",
        "--workers",
        "1",
        TANDEM_TEST_EXECUTOR="subinterpreter",
        name="supervised-broken",
    )

    wait_until(
        lambda: "(it asked for a restart); restarting in" in parent.stderr,
        "the broken child to exit 75 and be restarted",
        timeout=120,
        alive=[parent],
    )
    wait_until(lambda: len(parent.children()) >= 2, "the restarted child", alive=[parent])
    # Every stuck task ends FAILED at its timeout: the released ones in the restarted child,
    # which retires at most two interpreters (within the cap: it goes on).
    wait_until(
        lambda: statuses(ids) == ["FAILED"] * STUCK,
        "every stuck task to fail at its timeout",
        timeout=120,
        alive=[parent],
    )
    wait_until(lambda: answers(port), "the restarted child to answer", alive=[parent])

    parent.send(signal.SIGTERM)
    assert parent.wait(90) == 0, parent.output()
    assert "tandem serve: exiting with status 75 for a restart" in parent.stderr

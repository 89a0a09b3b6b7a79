"""Chaos on the parallel executors, with the work and the traffic going on: ``tandem serve`` with
a process pool (and, on Python >= 3.14 with SQLite or PostgreSQL, a subinterpreter pool) killed
with SIGKILL and restarted, while a feeder keeps enqueueing batches of tasks and a prober keeps
sending HTTP requests to whichever ``serve`` is live.

At the end, as in every chaos scenario: every task SUCCESSFUL and in the ledger, duplicates only
from killed attempts, nothing READY or RUNNING — and every request was answered or refused (the
port of a killed server), none hung past the prober's timeout. Bounded: a few hundred short
tasks and four kills per executor (``TANDEM_CHAOS_FLOW_*`` raise them for a soak).
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections import Counter

import pytest
from django.conf import settings

from tests.chaos.monkey import Deployment, Monkey, TableLedger, check_survived, scaled, seed
from tests.chaos.test_chaos import LEASE, Feeder, finish
from tests.support.scale import Scale

pytestmark = [
    pytest.mark.process,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

EXECUTORS = ["process"] + (
    ["subinterpreter"] if sys.version_info >= (3, 14) and settings.DB_KIND != "mariadb" else []
)
FIRST = scaled("FLOW_FIRST", 300)  # enqueued before the first kill
BATCH = scaled("FLOW_BATCH", 50)  # then one batch after each kill
KILLS = scaled("FLOW_KILLS", 4)
SECONDS = 0.05  # per task
#: A request that takes longer than this is hung (a live server answers in milliseconds).
HUNG_AFTER = 10.0


class Prober:
    """GET ``/-/health/live`` on the live server's port, one request after another, on a thread
    of its own; counts each outcome: the status answered, ``refused`` (nothing listening: a
    killed server's port, or a restarting one), ``hung`` (no answer within ``HUNG_AFTER``)."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.outcomes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            live = list(self.deployment.live)
            if live:
                self.outcomes[self.probe(self.deployment.ports[live[0].pid])] += 1
            self._stop.wait(0.02)

    @staticmethod
    def probe(port: int) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HUNG_AFTER)
        try:
            conn.request("GET", "/-/health/live")
            response = conn.getresponse()
            response.read()
            return str(response.status)
        except TimeoutError:
            return "hung"
        except (OSError, http.client.HTTPException):
            return "refused"  # refused, reset or closed mid-answer: the server was killed
        finally:
            conn.close()

    def stop(self) -> Counter[str]:
        self._stop.set()
        self._thread.join(HUNG_AFTER + 5)
        return self.outcomes


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("scale", ["database"], indirect=True)
def test_serve_killed_while_tasks_and_requests_keep_coming(scale: Scale, executor: str) -> None:
    started = time.monotonic()
    feeder = Feeder(scale, "flow", SECONDS, slots=4)  # starts while the deployment does
    deployment = Deployment(
        scale, "serve", 1, "-w", "4", TANDEM_TEST_LEASE=LEASE, TANDEM_TEST_EXECUTOR=executor
    )
    monkey = Monkey(deployment, seed())
    total = FIRST + KILLS * BATCH
    ledger = TableLedger()
    feeder.add(FIRST)
    prober = Prober(deployment)
    try:
        for _ in range(KILLS):
            monkey.kill(1, ledger, total)
            # The feeder: a batch after each kill, while the replacement starts and runs.
            feeder.add(BATCH)
    finally:
        outcomes = prober.stop()
    feeder.close()
    ids = feeder.ids
    finish(deployment, ids)

    name = f"serve-{executor}-{settings.DB_KIND}"
    report = check_survived(name, deployment, monkey, ids, "flow", started)
    assert report.kills == KILLS and report.lost == 0
    assert outcomes["hung"] == 0, outcomes
    assert outcomes["200"] > 0, outcomes  # the live servers answered
    print(f"chaos {name}: requests {dict(outcomes)}")

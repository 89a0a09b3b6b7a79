"""The worker tier's harness: in-process supervisors, stepped by the test or run in a thread."""

from __future__ import annotations

import copy
import threading
from typing import Any

from django.db import connections
from django.tasks import task_backends

from tandem.worker.supervisor import Supervisor
from tests.support.doubles import wait_for
from tests.tasks import GATES


class Harness:
    """Makes supervisors and cleans up after them: no thread or connection outlives a test."""

    def __init__(self) -> None:
        self.supervisors: list[Supervisor] = []
        self.threads: list[tuple[Supervisor, threading.Thread]] = []

    def supervisor(self, **kwargs: Any) -> Supervisor:
        """A supervisor; with an injected ``clock``, its broker leases on that clock too (a
        frozen clock could not expire a lease measured on the store's)."""
        kwargs.setdefault("listen", False)
        if "clock" in kwargs:
            broker = kwargs.get("broker")
            if broker is None:
                alias = kwargs.get("backend_alias", "default")
                broker = copy.copy(task_backends[alias].broker)  # type: ignore[attr-defined]
            broker.store_clock = False
            kwargs["broker"] = broker
        supervisor = Supervisor(**kwargs)
        self.supervisors.append(supervisor)
        return supervisor

    def run_in_background(self, supervisor: Supervisor) -> threading.Thread:
        """``supervisor.run()`` in a thread that closes its own database connections at the end."""

        def target() -> None:
            try:
                supervisor.run()
            finally:
                connections.close_all()

        thread = threading.Thread(target=target, name="test-supervisor", daemon=True)
        self.threads.append((supervisor, thread))
        thread.start()
        return thread

    @staticmethod
    def wait_for_outcomes(supervisor: Supervisor, count: int) -> None:
        """Wait until the pools have handed ``count`` outcomes over (settled at the next step)."""
        wait_for(lambda: len(supervisor._outcomes) >= count, f"{count} outcome(s)")

    def cleanup(self) -> None:
        for supervisor, thread in self.threads:
            if thread.is_alive():
                supervisor.request_stop(force=True)
                thread.join(10)
        for event in list(GATES.values()):
            event.set()
        in_threads = {id(s) for s, _ in self.threads}
        for supervisor in self.supervisors:
            if not supervisor._started:
                continue
            if id(supervisor) not in in_threads:
                supervisor.close()  # run() closes its own; a second close() is harmless
            for state in supervisor.pools:
                state.pool.stop(10)  # joins tasks a forced stop left running
        GATES.clear()

from __future__ import annotations

import os

from django.apps import AppConfig


class ServeTestsConfig(AppConfig):
    name = "tests.serve"
    label = "serve_tests"

    def ready(self) -> None:
        if os.environ.get("TANDEM_TEST_NO_LISTEN") == "1":
            # No LISTEN/NOTIFY, no SQLite wake-up socket: with the long poll interval, only the
            # in-process wake-up after an enqueue's commit can start a task promptly.
            from tandem.worker.supervisor import Supervisor

            Supervisor._start_listener = lambda self: None  # type: ignore[method-assign]
        if os.environ.get("TANDEM_TEST_BREAK_SUPERVISOR") == "1":
            from tandem.worker.supervisor import Supervisor

            def broken(self: Supervisor, now: object) -> None:
                raise RuntimeError("injected supervisor failure")

            Supervisor._heartbeat = broken  # type: ignore[method-assign,assignment]

"""``tandem worker --burst`` on a terminal: a progress bar of tasks done out of the total.

The total is what this burst can still run, re-read every tick: tasks settled so far, tasks in
flight, and tasks READY and due now on the worker's queues (an enqueue during the burst grows
it). The bar goes to stderr and is drawn only on a terminal; log lines written through a handler
the bar is attached to clear it first, so they never share a line with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TextIO

from django.db import connections
from django.utils import timezone

from tandem.worker.supervisor import Supervisor

WIDTH = 30


def render(done: int, total: int, running: int, width: int = WIDTH) -> str:
    """``[#########---------] 12/40 tasks, 3 running`` (no newline)."""
    total = max(total, done)
    filled = width if total == 0 else round(width * done / total)
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total} tasks, {running} running"


def due_ready(supervisor: Supervisor) -> int:
    """READY tasks due now on the supervisor's queues (``Broker.due_ready``)."""
    queues: Sequence[str] = supervisor.queues
    return supervisor.broker.due_ready(queues, timezone.now())


class ProgressBar:
    """Redraws the bar every ``interval`` seconds from its own thread until ``stop()``."""

    def __init__(self, supervisor: Supervisor, stream: TextIO, interval: float = 0.2) -> None:
        self.supervisor = supervisor
        self.stream = stream
        self.interval = interval
        self._lock = threading.Lock()
        self._drawn = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tandem-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop redrawing; draw the final numbers and end the line."""
        self._stop.set()
        self._thread.join(5)
        done = self.supervisor.settled
        self._draw(render(done, done, 0), end="\n")

    def clear(self) -> None:
        """Erase the bar so another line can be written; the next tick draws it again."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False

    def attach(self, handler: logging.Handler) -> None:
        """Clear the bar before ``handler`` writes a log record."""

        def clear_first(record: logging.LogRecord) -> bool:
            self.clear()
            return True

        handler.addFilter(clear_first)

    def _draw(self, line: str, end: str = "") -> None:
        with self._lock:
            self.stream.write(f"\r\x1b[K{line}{end}")
            self.stream.flush()
            self._drawn = not end

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                supervisor = self.supervisor
                running = supervisor.in_flight
                done = supervisor.settled
                try:
                    ready = due_ready(supervisor)
                except Exception:  # the supervisor reports store trouble itself
                    continue
                self._draw(render(done, done + running + ready, running))
        finally:
            for connection in connections.all(initialized_only=True):
                connection.close()


__all__ = ["ProgressBar", "due_ready", "render"]

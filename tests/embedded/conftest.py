"""Fixtures for the embedded tier: in-process embedded workers, always stopped after a test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tandem import embedded
from tandem.models import TaskRecord
from tests.tasks import GATES


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 20.0) -> float:
    """Poll ``predicate`` every 20 ms; fail after ``timeout`` seconds. Returns the time it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def status(result_id: str) -> str:
    return str(TaskRecord.objects.get(pk=result_id).status)


@pytest.fixture
def started() -> Iterator[list[embedded.EmbeddedWorker]]:
    """Workers a test started (append them); stopped, with their tasks' threads joined, after."""
    workers: list[embedded.EmbeddedWorker] = []
    try:
        yield workers
    finally:
        embedded.stop(grace=0)
        for event in list(GATES.values()):
            event.set()
        for worker in workers:
            worker.stop(grace=0)
            for state in worker.supervisor.pools:
                state.pool.stop(10)  # joins tasks a forced stop left running
        GATES.clear()

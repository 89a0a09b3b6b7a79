"""Tasks the browser test enqueues: they wait on, or need, files the test creates."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.tasks import task


@task
def wait_for_file(flag: str, limit: float = 60.0) -> bool:
    """Stays RUNNING until the file ``flag`` exists (at most ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} did not appear within {limit:g}s")
        time.sleep(0.05)
    return True


@task
def needs_file(path: str) -> str:
    """Fails while ``path`` does not exist; returns its content once it does."""
    return Path(path).read_text()

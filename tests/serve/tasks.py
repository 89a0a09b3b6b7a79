"""Tasks the serve tests enqueue (importable in every executor's workers)."""

from __future__ import annotations

import os
import time

from django.tasks import task


@task
def spin_until(flag: str, limit: float = 60.0) -> int:
    """CPU-bound pure Python until the file ``flag`` exists (at most ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    n = 0
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} did not appear within {limit:g}s")
        for _ in range(20_000):
            n += 1
    return n


@task
def quick(value: str) -> str:
    return value


@task
def loaded_modules() -> list[str]:
    """The modules the worker that runs it has imported."""
    import sys

    return sorted(sys.modules)

"""Tasks the monitoring tests enqueue into ``tandem serve`` (whose settings have only the
``default`` queue, so ``tests.tasks`` does not load there)."""

from __future__ import annotations

from tandem import task


@task(max_attempts=2, backoff=lambda attempt: 0)
def fails_twice(message: str) -> None:
    """Fails both of its attempts: one retry, then FAILED."""
    raise RuntimeError(message)


@task
def double(value: int) -> int:
    return value * 2

"""Tasks of the features tier that the shared catalogue (``tests/tasks.py``) does not have.

``django_*`` tasks are defined with **Django's own** ``@task`` and tandem's extras: Django >= 6.1
passes extra keyword arguments to the backend's ``task_class`` (``tandem.Task``). On Django 6.0
the same definitions go through ``tandem.task`` (the tests that need Django's path skip there).
"""

from __future__ import annotations

from typing import Any

import django
from django.tasks import task

from tandem import task as tandem_task
from tests.tasks import add_to, flaky, gate, group_done, parents_seen, spin  # noqa: F401  (workflow tasks, shared)

#: Django's decorator where it passes extras through, tandem's where it does not.
extras_task: Any = task if django.VERSION >= (6, 1) else tandem_task


@extras_task(max_attempts=3, backoff=lambda attempt: 50.0 * attempt)
def django_flaky(key: str, fail_times: int) -> int:
    """Fails ``fail_times`` times, then succeeds; retried by its own options."""
    return flaky.call(key, fail_times)


@extras_task(timeout=0.3)
def django_short_timeout(seconds: float) -> int:
    return spin.call(seconds)


@tandem_task(max_attempts=1)
def fails_once_only(key: str) -> None:
    """Always fails; its own ``max_attempts=1`` beats any pool default."""
    flaky.call(key, 1_000)


@tandem_task(timeout=10)
def long_timeout_spin(seconds: float) -> int:
    """Runs longer than a short pool timeout: its own ``timeout`` beats the pool's."""
    return spin.call(seconds)


@tandem_task(takes_context=True, max_attempts=2, backoff=lambda attempt: 0)
def checkpointed(context: Any, key: str) -> dict[str, Any]:
    """Attempt 1 saves a checkpoint (throttled: not forced) and raises; attempt 2 returns what
    it found. The throttled value must still reach the store when attempt 1 ends."""
    if context.attempt == 1:
        context.save_progress({"step": 1}, force=True)
        context.save_progress({"step": 2})  # held back by the throttle, flushed at the end
        raise RuntimeError("first attempt fails after its checkpoint")
    return {"checkpoint": context.checkpoint, "attempt": context.attempt}


@task(takes_context=True)
def progress_then_wait(context: Any, name: str) -> str:
    """Saves progress, then stays RUNNING until the test opens gate ``name``."""
    context.save_progress({"done": 7}, force=True)
    gate(f"{name}:saved").set()
    gate(name).wait(10)
    return "done"


@tandem_task(concurrency_key=lambda name, account: f"account:{account}")
def gated_per_account(name: str, account: str) -> bool:
    """At most one at a time per account (``concurrency_limit`` 1); waits on gate ``name``."""
    return gate(name).wait(10.0)


@extras_task(concurrency_key="exports", concurrency_limit=1, on_limit="discard")
def gated_export(name: str) -> bool:
    """One export at a time; an export due while another runs is dropped (FAILED)."""
    return gate(name).wait(10.0)


@extras_task(rate_limit="2/s")
def rated_add(a: int, b: int) -> int:
    """At most two starts in any second, across every worker."""
    return a + b

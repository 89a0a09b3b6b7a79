"""The demo's tasks: plain ``django.tasks`` functions, run by tandem's workers."""

from __future__ import annotations

import time

from django.tasks import task

import tandem


@task
def send_welcome_email(email: str) -> str:
    """Pretend to talk to a slow mail server."""
    time.sleep(1)
    return f"Welcome email sent to {email}"


@task
def count_primes(below: int) -> dict[str, float]:
    """CPU-bound on purpose: trial division, no clever sieve."""
    started = time.perf_counter()
    count = 0
    for n in range(2, below):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return {"below": below, "primes": count, "seconds": round(time.perf_counter() - started, 3)}


@tandem.task(max_attempts=3)
def charge_card(order: str) -> None:
    """Always fails: shows the retries (attempts grow to 3) and the recorded error."""
    raise RuntimeError(f"card declined for order {order} (this task fails on purpose)")


@tandem.task
def send_reminder(note: str) -> str:
    """Enqueued with ``.using(run_after=timedelta(seconds=10))``: waits READY until then."""
    return f"Reminder: {note}"


@task(queue_name="critical", priority=10)
def reset_password(username: str) -> str:
    """Runs on the "critical" queue, in its own pool: never stuck behind slow tasks."""
    return f"Password reset link sent to {username}"

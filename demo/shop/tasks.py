"""The demo's tasks: plain ``django.tasks`` functions, run by tandem's workers."""

from __future__ import annotations

import csv
import os
import time
from typing import Any

from django.conf import settings
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


@tandem.task(takes_context=True, queue_name="default")
def export_orders(
    context: Any, name: str, rows: int, seconds_per_row: float = 0.01
) -> dict[str, Any]:
    """A long CSV export that resumes where it stopped.

    After every row it saves a checkpoint (rows written, bytes in the file). If its worker dies
    (``kill -9``), the task is recovered once the lease expires, and the next attempt truncates the
    file to the checkpoint and carries on: no row is lost or written twice.
    """
    directory = settings.TANDEM_DEMO_EXPORTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.csv"
    checkpoint = context.checkpoint or {"rows": 0, "bytes": 0}
    done = int(checkpoint["rows"])
    with path.open("a+b") as raw:
        raw.truncate(int(checkpoint["bytes"]))  # drop a row half-written when the worker died
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if done == 0:
            writer.writerow(["order", "customer", "amount"])
        for number in range(done, rows):
            time.sleep(seconds_per_row)  # stands for a slow query per row
            writer.writerow([f"A-{number:06d}", f"customer-{number % 97}", f"{number * 1.25:.2f}"])
            handle.flush()
            context.save_progress(
                {"rows": number + 1, "bytes": os.fstat(handle.fileno()).st_size, "total": rows},
                force=True,
            )
    return {"file": str(path), "rows": rows, "resumed_from": int(checkpoint["rows"])}

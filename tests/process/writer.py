"""A writer process for the process tier: ``python -m tests.process.writer PREFIX COUNT BATCH``.

Waits until the workers have finished a first task (so it really writes while they run), then
enqueues ``COUNT`` ledger tasks with keys ``PREFIX-<n>``, ``BATCH`` per transaction.
"""

from __future__ import annotations

import sys
import time


def main(prefix: str, count: int, batch: int) -> None:
    import django

    django.setup()
    from django.db import transaction

    from tandem.models import TaskRecord
    from tests.tasks import ledger

    deadline = time.monotonic() + 60
    while not TaskRecord.objects.filter(status="SUCCESSFUL").exists():
        if time.monotonic() > deadline:
            sys.exit("writer: no task finished within 60s; are the workers running?")
        time.sleep(0.01)
    for start in range(0, count, batch):
        with transaction.atomic():
            for n in range(start, min(count, start + batch)):
                ledger.enqueue(f"{prefix}-{n}")
    print(f"enqueued {count}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))

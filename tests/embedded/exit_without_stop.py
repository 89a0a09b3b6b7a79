"""A host that forgets ``stop()``: start an embedded worker, let a long task run, then exit.

Run as ``python -m tests.embedded.exit_without_stop`` with the test settings pointed at the test
database; prints the task's id once it is RUNNING, then the main thread returns.
"""

from __future__ import annotations

import sys
import time

import django

django.setup()

from tandem import embedded  # noqa: E402
from tandem.models import TaskRecord  # noqa: E402
from tests.tasks import sleep  # noqa: E402

embedded.start()
result = sleep.enqueue(600)
deadline = time.monotonic() + 90  # a loaded machine starts interpreters slowly
while TaskRecord.objects.get(pk=result.id).status != "RUNNING":
    if time.monotonic() > deadline:
        sys.exit("the task never started")
    time.sleep(0.05)
print(result.id, flush=True)

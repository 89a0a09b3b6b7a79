"""Tasks the faults and serve tiers share, in a module of their own: a worker that imports it
(``tandem serve`` on the serve tier's settings, whose only queue is ``default``) must not meet
the tasks of other queues that ``tests/tasks.py`` declares."""

from __future__ import annotations

import time

from tandem import task as tandem_task


@tandem_task(timeout=0.3)
def stuck(seconds: float) -> None:
    """Blocks in one C call (``time.sleep``) far past its timeout: a subinterpreter's watchdog
    cannot interrupt it, so the pool retires the interpreter."""
    time.sleep(seconds)

"""Tasks the faults and serve tiers share, in a module of their own: a worker that imports it
(``tandem serve`` on the serve tier's settings, whose only queue is ``default``) must not meet
the tasks of other queues that ``tests/tasks.py`` declares."""

from __future__ import annotations

import time

from tandem import task as tandem_task


@tandem_task(timeout=5)
def stuck(seconds: float) -> None:
    """Does not return from its timeout: like a blocking C call, which a subinterpreter's
    watchdog cannot interrupt, so the pool retires the interpreter. (The timeout is 5 s, not a
    fraction of one: it also covers importing this module in a fresh interpreter, which a
    loaded CPU stretched past 0.3 s, and the watchdog then interrupted the import instead.)

    One ``time.sleep`` is not enough: a signal that reaches the sleeping thread (a child ending,
    on a loaded machine) ends the sleep early and lets the watchdog's exception surface, so the
    task would look interrupted. The exceptions tandem raises in a task are swallowed instead."""
    from tandem.exceptions import LeaseLost, TaskTimeout

    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            time.sleep(left)
        except (TaskTimeout, LeaseLost):
            continue

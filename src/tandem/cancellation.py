"""What ``tandem.cancel()`` did to a task."""

from __future__ import annotations

from enum import StrEnum


class CancelOutcome(StrEnum):
    """What ``tandem.cancel()`` did; both members are truthy (non-empty strings), so
    ``if tandem.cancel(id):`` still reads "cancelled or asked to stop". A task that is unknown
    or already finished gives ``False`` instead."""

    #: The task was READY: it ended FAILED with a ``Cancelled`` error and will never run.
    CANCELLED = "cancelled"
    #: The task is RUNNING: it was asked to stop, and runs on until its code checks
    #: ``context.cancelled`` (a process pool kills it at its next heartbeat).
    REQUESTED = "cancel requested"


__all__ = ["CancelOutcome"]

"""``TaskContext`` with tandem's extras: progress, checkpoints and cooperative cancellation.

A task declared with ``takes_context=True`` receives one of these (a subclass of Django's
``TaskContext``, so ``context.task_result`` and ``context.attempt`` work as documented):

- ``context.save_progress(data)`` stores JSON ``data`` on the task's row (at most once per
  ``PROGRESS_INTERVAL`` seconds unless ``force=True``; the last call is always stored when the
  attempt ends). It shows on the result (``result.progress``), in the admin and the dashboard.
- ``context.checkpoint`` is the last progress saved — by this attempt, or by an earlier attempt
  that failed, timed out or was lost with its worker — so a retried task resumes where it was.
- ``context.cancelled`` / ``context.raise_if_cancelled()``: whether ``tandem.cancel()`` was
  called for this task (read from the store at most once per ``CANCEL_CHECK_INTERVAL``).

The writes go straight to the store, guarded by the attempt's lease: an attempt that lost its
lease (recovered elsewhere) can no longer change what the newer attempt saves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.tasks import TaskContext as DjangoTaskContext
from django.utils import timezone

from tandem.brokers.base import Broker, StoredTask
from tandem.exceptions import Cancelled
from tandem.serialization import to_json

#: Seconds between two stored progress writes (the latest data wins; none is lost at the end).
PROGRESS_INTERVAL = 1.0
#: Seconds between two reads of the cancellation flag.
CANCEL_CHECK_INTERVAL = 0.5

_UNSET: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext(DjangoTaskContext):  # type: ignore[misc,type-arg]  # frozen in Django
    """Django's ``TaskContext`` plus ``save_progress``, ``checkpoint`` and ``cancelled``."""

    broker: Broker = field(repr=False)
    stored: StoredTask = field(repr=False)
    _state: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._state.update(
            checkpoint=self.stored.progress,
            pending=_UNSET,
            saved_at=float("-inf"),
            checked_at=float("-inf"),
            cancelled=False,
            lease_lost=False,
        )

    @property
    def checkpoint(self) -> Any:
        """The last progress saved for this task (None when nothing was ever saved)."""
        return self._state["checkpoint"]

    def save_progress(self, data: Any, *, force: bool = False) -> bool:
        """Record progress ``data`` (JSON); returns True when it was written to the store now.

        Raises ``NotJSONError`` at once for data that is not JSON. Writes are throttled: data
        saved less than ``PROGRESS_INTERVAL`` after the last write waits for the next call or
        the end of the attempt.
        """
        data = to_json(data, "progress")
        self._state["checkpoint"] = data
        if not force and time.monotonic() - self._state["saved_at"] < PROGRESS_INTERVAL:
            self._state["pending"] = data
            return False
        return self._write(data)

    def flush(self) -> None:
        """Write progress that throttling held back (called when the attempt ends)."""
        if self._state["pending"] is not _UNSET:
            self._write(self._state["pending"])

    def _write(self, data: Any) -> bool:
        self._state["pending"] = _UNSET
        self._state["saved_at"] = time.monotonic()
        if self._state["lease_lost"]:
            return False
        written = self.broker.save_progress(
            self.stored.id,
            self.stored.worker_id,
            data,
            timezone.now(),
            attempt_token=self.stored.attempt_token,
        )
        if not written:
            self._state["lease_lost"] = True
        return written

    @property
    def cancelled(self) -> bool:
        """Whether this task was cancelled while running (checked against the store)."""
        if self._state["cancelled"]:
            return True
        now = time.monotonic()
        if now - self._state["checked_at"] >= CANCEL_CHECK_INTERVAL:
            self._state["checked_at"] = now
            if self.broker.cancel_requested([self.stored.id]):
                self._state["cancelled"] = True
        return bool(self._state["cancelled"])

    @property
    def parent_results(self) -> list[Any]:
        """The results of the tasks this task waited for (``tandem.enqueue_after``, a chain's
        previous step), in the order given; [] for a task that waited for none."""
        from tandem.backends.base import to_task_result

        stored = (self.broker.get(i) for i in self.broker.parent_ids(self.stored.id))
        return [to_task_result(s) for s in stored if s is not None]

    def raise_if_cancelled(self) -> None:
        """Raise ``tandem.exceptions.Cancelled`` when the task was cancelled: it ends FAILED
        (never retried) with that error."""
        if self.cancelled:
            raise Cancelled(f"task {self.stored.id} was cancelled while it ran")

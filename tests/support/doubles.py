"""Test doubles for driving a supervisor: a frozen clock and a broker that records its calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, DataError
from django.utils import timezone

from tandem.brokers.base import FAILED, Settlement, StoredTask
from tandem.brokers.database import DatabaseBroker


class FrozenClock:
    """``Supervisor(clock=...)``: frozen at its first reading; only ``advance()`` moves it.

    Tasks enqueued before the first reading are claimable; later ones only after an advance.
    """

    def __init__(self) -> None:
        self._now: datetime | None = None

    def __call__(self) -> datetime:
        if self._now is None:
            self._now = timezone.now()
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now = self() + timedelta(seconds=seconds)
        return self._now

    def move_to(self, moment: datetime) -> None:
        assert moment >= self(), "a clock does not go back"
        self._now = moment


class SpyBroker(DatabaseBroker):
    """The real database broker, recording each call and the thread that made it.

    ``fail_settles``: how many of the next ``settle()`` calls raise a ``DatabaseError`` before
    writing anything (a store that is briefly unavailable). ``reject``: ids of tasks whose
    outcome the store cannot hold — a ``settle()`` that includes one as anything but FAILED
    raises a ``DataError`` (as PostgreSQL does for a NUL character in JSON).
    """

    def __init__(
        self,
        backend_alias: str = "default",
        *,
        fail_settles: int = 0,
        reject: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(backend_alias)
        self.calls: list[tuple[str, str]] = []  # (method, thread name)
        self.settlements: list[list[Settlement]] = []  # one list per settle() call
        self.recovered: list[Any] = []
        self.fail_settles = fail_settles
        self.reject = reject

    def _record(self, name: str) -> None:
        self.calls.append((name, threading.current_thread().name))

    def methods(self) -> list[str]:
        return [name for name, _ in self.calls]

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        self._record("claim")
        return super().claim(*args, **kwargs)

    def renew(self, *args: Any, **kwargs: Any) -> int:
        self._record("renew")
        return super().renew(*args, **kwargs)

    def settle(self, settlements: Sequence[Settlement]) -> int:
        self._record("settle")
        self.settlements.append(list(settlements))
        if self.fail_settles:
            self.fail_settles -= 1
            raise DatabaseError("the task store is unavailable (injected by the test)")
        if any(s.id in self.reject and s.status != FAILED for s in settlements):
            raise DataError("the task store cannot hold this value (injected by the test)")
        return super().settle(settlements)

    def release(self, *args: Any, **kwargs: Any) -> int:
        self._record("release")
        return super().release(*args, **kwargs)

    def recover_expired(self, *args: Any, **kwargs: Any) -> Any:
        self._record("recover_expired")
        recovered = super().recover_expired(*args, **kwargs)
        self.recovered.extend(recovered)
        return recovered

    def heartbeat_worker(self, *args: Any, **kwargs: Any) -> None:
        self._record("heartbeat_worker")
        super().heartbeat_worker(*args, **kwargs)


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` every 20 ms until it is true; fail the test after ``timeout`` seconds.

    The bound is for liveness, never speed: a passing wait returns at once, and a loaded CI
    machine (three database runs side by side) must not turn a slow start into a failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def running_task(**fields: Any) -> StoredTask:
    """A claimed (RUNNING) task as a pool gets it, stamped now; ``fields`` override."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": "0b4e8e0e-0000-4000-8000-000000000001",
        "backend": "default",
        "queue_name": "emails",
        "task_path": "shop.tasks.send",
        "priority": 0,
        "takes_context": False,
        "status": "RUNNING",
        "args": [],
        "kwargs": {},
        "run_after": None,
        "available_at": now,
        "enqueued_at": now,
        "started_at": now,
        "last_attempted_at": now,
        "finished_at": None,
        "return_value": None,
        "errors": (),
        "worker_ids": ("host-0-old", "host-1-abc"),
        "max_attempts": 3,
        "worker_id": "host-1-abc",
        "lease_expires_at": None,
    }
    values.update(fields)
    return StoredTask(**values)

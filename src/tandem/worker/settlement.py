"""Settlement: how an attempt's ``Outcome`` becomes the task's ending, and how endings are written.

``Settler.ending()`` decides (SUCCESSFUL; READY again after a back-off while attempts are left;
FAILED); ``Settler.settle()`` writes a batch in the caller's transaction and enqueues the
``on_success``/``on_failure`` hooks of the endings the store took — a stale attempt's ending
(its lease lost, its token no longer current) is rejected by the store and gets no hook.
``Settler.write()`` does the same in a transaction of its own, settling one by one when the store
rejects a value (a ``DataError``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import DatabaseError, DataError

from tandem.backends.base import resolve_task
from tandem.brokers.base import (
    FAILED,
    READY,
    SUCCESSFUL,
    Broker,
    ErrorRecord,
    Settlement,
    StoredTask,
)
from tandem.conf import PoolConfig
from tandem.execution import Outcome
from tandem.retries import backoff_delay
from tandem.tasks import AnyTask, Task
from tandem.worker.store_watch import STORE_ERRORS

logger = logging.getLogger("tandem.worker")


def _unstorable(settlement: Settlement, exc: DatabaseError) -> Settlement:
    """The FAILED ending written instead of an attempt's outcome that the store rejected."""
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    message = f"{kind}: the task store rejected this attempt's outcome ({settlement.status}): {exc}"
    return Settlement(
        id=settlement.id,
        worker_id=settlement.worker_id,
        status=FAILED,
        finished_at=settlement.finished_at,
        error=ErrorRecord(exception_class_path=kind, traceback=message.replace("\x00", "\\x00")),
        task_path=settlement.task_path,
        attempt_token=settlement.attempt_token,
        holds_slot=settlement.holds_slot,
    )


class Settler:
    """Endings of ``worker_id``'s attempts, written through ``broker``."""

    def __init__(self, broker: Broker, worker_id: str) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self._tasks: dict[str, AnyTask | None] = {}  # task path -> task (None: not runnable)
        #: (task id, attempt token) -> the FAILED ending ``write()`` stored instead of a
        #: settlement the store rejected (``stored_as()`` takes it).
        self._substitutes: dict[tuple[str, str], Settlement] = {}

    def write(self, settlements: list[Settlement]) -> list[bool]:
        """Settle in one batch; a value the store rejects must not block the other outcomes.

        A ``DataError`` is about one row's data, not the store (PostgreSQL cannot hold a NUL
        character in JSON): writing the same batch again would fail forever while no lease is
        renewed. So the batch is written one by one, and a settlement the store still rejects is
        written as FAILED with the store's error instead.
        """
        try:
            with self.broker.transaction():
                return self.settle(settlements)
        except DataError as exc:
            if len(settlements) > 1:
                return [kept for s in settlements for kept in self.write([s])]
            logger.error(
                "the task store rejected the outcome of task %s: %s", settlements[0].id, exc
            )
            substitute = _unstorable(settlements[0], exc)
            with self.broker.transaction():
                written = self.settle([substitute])
            self._substitutes[(substitute.id, substitute.attempt_token)] = substitute
            return written

    def stored_as(self, settlement: Settlement) -> Settlement:
        """The ending stored for ``settlement``'s attempt: itself, or the FAILED one ``write()``
        stored instead when the store rejected its value."""
        if not self._substitutes:
            return settlement
        return self._substitutes.pop((settlement.id, settlement.attempt_token), settlement)

    def settle(self, settlements: list[Settlement]) -> list[bool]:
        """Write the settlements, then enqueue the ``on_success``/``on_failure`` hooks of those
        that finished — in the caller's transaction, so a hook is enqueued exactly when its
        task's ending is written. Returns, per settlement, whether the store took it (a stale
        attempt's ending is rejected)."""
        count = self.broker.settle(settlements)
        written = [True] * len(settlements)
        if count < len(settlements):  # some attempts were stale: which ones were written?
            written = [self._was_written(s) for s in settlements]
        for settlement, kept in zip(settlements, written, strict=True):
            if settlement.status == READY or not kept:
                continue
            task = self.task(settlement.task_path)
            hook = getattr(
                task, "on_success" if settlement.status == SUCCESSFUL else "on_failure", None
            )
            if hook is not None:
                self._enqueue_hook(hook, settlement.id)
        return written

    def _was_written(self, settlement: Settlement) -> bool:
        """Whether the store holds ``settlement`` as the task's ending (its attempt was current)."""
        stored = self.broker.get(settlement.id)
        if stored is None or stored.attempt_token != settlement.attempt_token:
            return False
        if settlement.status == READY:
            return stored.status == READY and stored.available_at == settlement.retry_at
        return stored.status == settlement.status and stored.finished_at == settlement.finished_at

    def _enqueue_hook(self, hook: AnyTask | str, result_id: str) -> None:
        try:
            hook_task = resolve_task(hook) if isinstance(hook, str) else hook
            hook_task.enqueue(result_id)
        except STORE_ERRORS:
            raise  # the round is retried with the outcome
        except Exception:
            logger.exception("could not enqueue hook %r for task %s", hook, result_id)

    def task(self, task_path: str) -> AnyTask | None:
        """The task a row names, resolved once per path (None when it does not resolve)."""
        if task_path not in self._tasks:
            try:
                self._tasks[task_path] = resolve_task(task_path)
            except Exception:
                self._tasks[task_path] = None
        return self._tasks[task_path]

    def retry_delay(self, task: StoredTask, pool: PoolConfig) -> timedelta:
        resolved = self.task(task.task_path)
        if isinstance(resolved, Task):
            try:
                seconds = resolved.retry_delay(task.attempts)
            except Exception:
                logger.exception("backoff of %s failed; using the pool's", task.task_path)
                seconds = None
            if seconds is not None:
                return timedelta(seconds=seconds)
        return backoff_delay(task.attempts, pool.backoff)

    def ending(self, outcome: Outcome, task: StoredTask, pool: PoolConfig) -> Settlement:
        if outcome.succeeded:
            return Settlement(
                id=task.id,
                worker_id=self.worker_id,
                attempt_token=task.attempt_token,
                status=SUCCESSFUL,
                finished_at=outcome.finished_at,
                return_value=outcome.return_value,
                task_path=task.task_path,
                holds_slot=task.concurrency_key is not None,
            )
        if outcome.retriable and task.attempts < task.max_attempts:
            return Settlement(
                id=task.id,
                worker_id=self.worker_id,
                attempt_token=task.attempt_token,
                status=READY,
                finished_at=outcome.finished_at,
                error=outcome.error,
                retry_at=outcome.finished_at + self.retry_delay(task, pool),
                task_path=task.task_path,
                holds_slot=task.concurrency_key is not None,
            )
        return Settlement(
            id=task.id,
            worker_id=self.worker_id,
            attempt_token=task.attempt_token,
            status=FAILED,
            finished_at=outcome.finished_at,
            error=outcome.error,
            task_path=task.task_path,
            holds_slot=task.concurrency_key is not None,
        )

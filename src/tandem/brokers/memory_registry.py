"""The memory twin's paused queues and worker registry, under the broker's lock."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from tandem.brokers.base import WorkerInfo


class MemoryRegistry:
    """Mixed into ``MemoryBroker``: ``pause_queues``/``resume_queues``/``paused_queues`` and the
    worker registry (``register_worker`` ... ``forget_workers``)."""

    backend_alias: str
    _lock: threading.Lock
    _workers: dict[str, WorkerInfo]
    _paused: dict[str, datetime]

    def pause_queues(self, queues: Sequence[str], now: datetime) -> list[str]:
        with self._lock:
            fresh = [q for q in dict.fromkeys(queues) if q not in self._paused]
            self._paused.update(dict.fromkeys(fresh, now))
            return fresh

    def resume_queues(self, queues: Sequence[str]) -> list[str]:
        with self._lock:
            return [q for q in dict.fromkeys(queues) if self._paused.pop(q, None) is not None]

    def paused_queues(self) -> dict[str, datetime]:
        with self._lock:
            return dict(sorted(self._paused.items()))

    def register_worker(self, worker: WorkerInfo) -> None:
        with self._lock:
            self._workers[worker.id] = worker

    def heartbeat_worker(
        self,
        worker_id: str,
        now: datetime,
        tasks_done: int,
        pools: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        with self._lock:
            if worker_id in self._workers:
                worker = self._workers[worker_id]
                self._workers[worker_id] = replace(
                    worker,
                    last_heartbeat_at=now,
                    tasks_done=tasks_done,
                    pools=worker.pools if pools is None else pools,
                )

    def unregister_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            mine = [w for w in self._workers.values() if w.backend == self.backend_alias]
        return sorted(mine, key=lambda w: w.last_heartbeat_at, reverse=True)

    def forget_workers(self, silent_since: datetime) -> int:
        with self._lock:
            gone = [
                k
                for k, w in self._workers.items()
                if w.backend == self.backend_alias and w.last_heartbeat_at < silent_since
            ]
            for key in gone:
                del self._workers[key]
            return len(gone)

"""The worker registry on the Redis store: a hash per worker, a sorted set per alias scored by
the last heartbeat."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tandem.brokers.base import WorkerInfo
from tandem.brokers.redis_client import store_errors
from tandem.brokers.redis_codec import from_iso, iso, score

if TYPE_CHECKING:
    import redis


class RedisWorkerRegistry:
    """Mixed into ``RedisBroker``."""

    backend_alias: str
    prefix: str
    result_ttl: float | None

    if TYPE_CHECKING:  # provided by RedisBroker
        client: redis.Redis

        def _run(self, name: str, *args: str | int) -> Any:
            raise NotImplementedError

        def key(self, *parts: str) -> str:
            raise NotImplementedError

    @store_errors
    def register_worker(self, worker: WorkerInfo) -> None:
        self._run(
            "register_worker",
            worker.id,
            worker.backend,
            worker.hostname,
            worker.pid,
            json.dumps(list(worker.queues)),
            json.dumps(worker.pools),
            iso(worker.started_at),
            iso(worker.last_heartbeat_at),
            score(worker.last_heartbeat_at),
            worker.tasks_done,
        )

    @store_errors
    def heartbeat_worker(
        self,
        worker_id: str,
        now: datetime,
        tasks_done: int,
        pools: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._run(
            "heartbeat_worker",
            worker_id,
            iso(now),
            score(now),
            tasks_done,
            "" if pools is None else json.dumps(pools),
        )

    @store_errors
    def unregister_worker(self, worker_id: str) -> None:
        self._run("unregister_worker", worker_id)

    @store_errors
    def workers(self) -> list[WorkerInfo]:
        ids: list[str] = self.client.zrevrange(self.key(self.backend_alias, "workers"), 0, -1)  # type: ignore[assignment]
        pipe = self.client.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(self.key("worker", worker_id))
        found = []
        for fields in pipe.execute():
            if not fields:
                continue  # forgotten between the two reads
            started_at = from_iso(fields["started_at"])
            last_heartbeat_at = from_iso(fields["last_heartbeat_at"])
            assert started_at is not None and last_heartbeat_at is not None
            found.append(
                WorkerInfo(
                    id=fields["id"],
                    backend=fields["backend"],
                    hostname=fields["hostname"],
                    pid=int(fields["pid"]),
                    queues=tuple(json.loads(fields["queues"])),
                    pools=json.loads(fields["pools"]),
                    started_at=started_at,
                    last_heartbeat_at=last_heartbeat_at,
                    tasks_done=int(fields["tasks_done"]),
                )
            )
        return found

    @store_errors
    def forget_workers(self, silent_since: datetime) -> int:
        return int(self._run("forget_workers", self.backend_alias, score(silent_since)))


__all__ = ["RedisWorkerRegistry"]

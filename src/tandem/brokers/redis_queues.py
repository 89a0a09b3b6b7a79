"""Queues as a whole on the Redis store: prune and count finished tasks, per-queue stats, the
rate limits that are full, selections for bulk commands, retrying the failed, pausing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tandem import rates
from tandem.brokers.base import FAILED, READY, RUNNING, SUCCESSFUL, QueueStats
from tandem.brokers.redis_client import store_errors
from tandem.brokers.redis_codec import (
    EPOCH,
    MICROSECOND,
    ORIGIN,
    canonical_id,
    from_iso,
    from_stamp,
    iso,
    score,
    stamp,
)

if TYPE_CHECKING:
    import redis

#: Finished tasks deleted per script call.
PRUNE_BATCH = 1000


class RedisQueues:
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

        def _expired_before(self) -> str:
            raise NotImplementedError

        def _store_now(self, now: datetime) -> datetime:
            raise NotImplementedError

    @store_errors
    def prune(self, finished_before: datetime, statuses: Sequence[str]) -> int:
        wanted = sorted(set(statuses) & {SUCCESSFUL, FAILED})
        if not wanted:
            return 0
        deleted = 0
        while True:  # in batches: each script call holds Redis only briefly
            gone, seen = self._run(
                "prune", self.backend_alias, score(finished_before), PRUNE_BATCH, *wanted
            )
            deleted += int(gone)
            if not seen:
                return deleted

    @store_errors
    def count_finished(self, finished_before: datetime, statuses: Sequence[str]) -> int:
        wanted = sorted(set(statuses) & {SUCCESSFUL, FAILED})
        if not wanted:
            return 0
        return int(
            self._run(
                "count_finished",
                self.backend_alias,
                score(finished_before),
                self._expired_before(),
                *wanted,
            )
        )

    @store_errors
    def stats(self) -> list[QueueStats]:
        trim = self._expired_before()
        stats = [
            QueueStats(
                queue_name=queue,
                ready=int(ready),
                running=int(running),
                failed=int(failed),
                successful=int(successful),
                oldest_ready_at=from_stamp(oldest) if oldest else None,
            )
            for queue, ready, running, failed, successful, oldest in self._run(
                "stats", self.backend_alias, trim
            )
        ]
        # A queue whose tasks have all expired or been pruned has no row in the database either.
        return sorted(
            (s for s in stats if s.ready or s.running or s.failed or s.successful),
            key=lambda s: s.queue_name,
        )

    @store_errors
    def rate_limited(self, now: datetime) -> dict[str, datetime]:
        now = self._store_now(now)
        full: dict[str, datetime] = {}
        for lkey, rate in self.client.hgetall(self.key(self.backend_alias, "rates")).items():
            lkey, rate = _text(lkey), _text(rate)
            try:
                count, window = rates.parse_rate(rate)
            except rates.InvalidRate:
                continue
            low = (now - timedelta(seconds=window) - EPOCH) // MICROSECOND
            starts: list[tuple[Any, float]] = self.client.zrangebyscore(  # type: ignore[assignment]
                self.key(self.backend_alias, "rate", lkey), f"({low}", "+inf", withscores=True
            )
            at = rates.free_at([float(s) / 1e6 for _, s in starts], count, window)
            if at is not None and at > (now - EPOCH).total_seconds():
                full[lkey] = EPOCH + timedelta(seconds=at)
        return full

    # -- selections and bulk retries -----------------------------------------------------------

    @store_errors
    def find(
        self,
        statuses: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        queue: str | None = None,
        task_path: str | None = None,
        finished_since: datetime | None = None,
        enqueued_since: datetime | None = None,
    ) -> list[str]:
        alias = self.backend_alias
        if ids is not None:
            candidates = [i for i in map(canonical_id, ids) if i is not None]
        else:
            queues: list[str] = (
                [queue]
                if queue is not None
                else sorted(self.client.smembers(self.key(alias, "queues")))  # type: ignore[arg-type]
            )
            pipe = self.client.pipeline(transaction=False)
            for name in queues:
                for status in statuses:
                    if status == READY:
                        pipe.zrange(self.key(alias, "ready", name), 0, -1)
                        pipe.zrange(self.key(alias, "delayed", name), 0, -1)
                    elif status == RUNNING:
                        pipe.zrange(self.key(alias, "running", name), 0, -1)
                    else:
                        low = score(finished_since) if finished_since is not None else "-inf"
                        pipe.zrangebyscore(self.key(alias, status.lower(), name), low, "+inf")
            candidates = []
            for members in pipe.execute():
                # ready/delayed members are ranks '<stamp>:<stamp>:<id>'; the others are ids.
                candidates += [m[38:] if len(m) > 36 else m for m in members]
        candidates = list(dict.fromkeys(candidates))
        fields = ["status", "backend", "queue_name", "task_path", "finished_at", "enqueued_at"]
        pipe = self.client.pipeline(transaction=False)
        for task_id in candidates:
            pipe.hmget(self.key("task", task_id), fields)
        found = []
        for task_id, values in zip(candidates, pipe.execute(), strict=True):
            status, backend, queue_name, path, finished, enqueued = values
            if status not in statuses or backend != alias:
                continue
            if (queue is not None and queue_name != queue) or (
                task_path is not None and path != task_path
            ):
                continue
            finished_at, enqueued_at = from_iso(finished), from_iso(enqueued)
            if finished_since is not None and (finished_at is None or finished_at < finished_since):
                continue
            if enqueued_since is not None and (enqueued_at is None or enqueued_at < enqueued_since):
                continue
            found.append((enqueued_at, task_id))
        return [task_id for _, task_id in sorted(found, key=lambda f: (f[0] or ORIGIN, f[1]))]

    @store_errors
    def retry_failed(self, max_attempts: Mapping[str, int], now: datetime) -> list[str]:
        pairs: list[str | int] = []
        for task_id, attempts in max_attempts.items():
            canonical = canonical_id(task_id)
            if canonical is not None:
                pairs += [canonical, attempts]
        if not pairs:
            return []
        moved: list[str] = self._run(
            "retry_failed", self.backend_alias, iso(now), stamp(now), *pairs
        )
        return moved

    # -- paused queues -------------------------------------------------------------------------

    @store_errors
    def pause_queues(self, queues: Sequence[str], now: datetime) -> list[str]:
        unique = list(dict.fromkeys(queues))
        if not unique:
            return []
        fresh: list[str] = self._run("pause", self.backend_alias, iso(now), *unique)
        return fresh

    @store_errors
    def resume_queues(self, queues: Sequence[str]) -> list[str]:
        unique = list(dict.fromkeys(queues))
        if not unique:
            return []
        resumed: list[str] = self._run("resume", self.backend_alias, *unique)
        return resumed

    @store_errors
    def paused_queues(self) -> dict[str, datetime]:
        paused: dict[str, str] = self.client.hgetall(self.key(self.backend_alias, "paused"))  # type: ignore[assignment]
        return {queue: datetime.fromisoformat(paused[queue]) for queue in sorted(paused)}


__all__ = ["RedisQueues"]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

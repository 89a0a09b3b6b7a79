"""The Redis store: tasks in hashes, queues in sorted sets, every transition one Lua script.

The scripts and the key layout are in ``redis_scripts``. What differs from the database store:

- **Durable at once, not transactional.** ``push`` returns after Redis has the task; there is no
  transaction to join, so a task enqueued in a database transaction that rolls back is still
  stored (use ``transaction.on_commit`` to enqueue after a commit). How durable "has the task"
  is depends on Redis's persistence settings (``appendonly yes``; see the how-to).
- **``transaction()`` is a no-op.** Each script is atomic, but the supervisor's settle and claim
  are two round trips: a connection lost between them leaves the settlements written, and the
  supervisor writes them again (the lease guard makes that a no-op).
- **Finished tasks expire** after ``result_ttl`` seconds (Redis's own key expiry); ``prune``
  deletes them earlier.
- **Wake-ups** are published by the scripts on ``<prefix>:<alias>:wake`` whenever tasks become
  claimable; ``tandem.brokers.listeners.RedisListener`` subscribes to it.

Connection failures surface as Python's ``ConnectionError``/``TimeoutError`` (``OSError``s), which
the supervisor treats as "store unavailable, retry", as it does for the database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis
from redis.client import PubSub
from redis.commands.core import Script

from tandem import rates
from tandem.brokers.base import (
    FAILED,
    READY,
    RUNNING,
    SUCCESSFUL,
    Broker,
    ErrorRecord,
    NewTask,
    QueueStats,
    Recovered,
    Settlement,
    StoredTask,
    WorkerInfo,
    cancelled_error,
    load_json,
    lost_lease_error,
    new_attempt_token,
    released_error,
)
from tandem.brokers.redis_client import store_errors
from tandem.brokers.redis_scripts import PRELUDE, SCRIPTS
from tandem.brokers.redis_workflow import RedisWorkflows
from tandem.conf import DEFAULT_REDIS_PREFIX, DEFAULT_RESULT_TTL

if TYPE_CHECKING:
    from tandem.brokers.listeners import Listener

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ORIGIN = datetime(1, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
#: Expired leases recovered per queue and heartbeat; finished tasks deleted per script call.
RECOVER_BATCH = 500
PRUNE_BATCH = 1000


def stamp(moment: datetime) -> str:
    """18 digits of microseconds since 0001-01-01 UTC: sorts as text exactly as in time."""
    return f"{(moment - ORIGIN) // MICROSECOND:018d}"


def from_stamp(text: str) -> datetime:
    return ORIGIN + timedelta(microseconds=int(text))


def score(moment: datetime) -> str:
    """Microseconds since the Unix epoch: a sorted-set score, exact for 1970 to 2255."""
    return str((moment - EPOCH) // MICROSECOND)


def iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat()


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _canonical(task_id: str) -> str | None:
    try:
        return str(uuid.UUID(str(task_id)))
    except ValueError:
        return None


class RedisBroker(RedisWorkflows, Broker):
    """The broker contract on Redis. ``prefix`` namespaces every key (several aliases may share
    a prefix, as several aliases share the database table); ``result_ttl`` is in seconds."""

    def __init__(
        self,
        backend_alias: str,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_REDIS_PREFIX,
        result_ttl: float | None = DEFAULT_RESULT_TTL,
        store_clock: bool = True,
        url: str = "",
    ) -> None:
        self.backend_alias = backend_alias
        self.url = url  # as configured, password masked: for describe()
        #: Leases on Redis's clock (``TIME`` inside the scripts); False: on the caller's ``now``.
        self.store_clock = store_clock
        self.client = client
        self.prefix = prefix
        self.result_ttl = result_ttl
        # register_script: EVALSHA, and after a NOSCRIPT reply (a restart, SCRIPT FLUSH) the
        # script is loaded again and the call retried.
        self._scripts: dict[str, Script] = {
            name: client.register_script(PRELUDE + source) for name, source in SCRIPTS.items()
        }

    # -- plumbing ------------------------------------------------------------------------------

    @store_errors
    def startup_problem(self) -> str | None:
        self.client.ping()  # raises when Redis does not answer
        return None

    def key(self, *parts: str) -> str:
        """A key of this store: ``key("task", id)``; per alias: ``key(alias, "ready", queue)``."""
        return ":".join((self.prefix, *parts))

    @property
    def wake_channel(self) -> str:
        return self.key(self.backend_alias, "wake")

    def pubsub(self) -> PubSub:
        """A pub/sub session on its own connection (for the wake-up listener)."""
        pubsub: PubSub = self.client.pubsub()  # type: ignore[no-untyped-call]
        return pubsub

    def _run(self, name: str, *args: str | int) -> Any:
        return self._scripts[name](args=[self.prefix, *args])

    def _ttl_args(self, finished_at: datetime) -> tuple[str, str]:
        """The result TTL in ms ('0': none) and the index entries it has expired (epoch µs)."""
        if self.result_ttl is None:
            return "0", ""
        return (
            str(max(1, round(self.result_ttl * 1000))),
            score(finished_at - timedelta(seconds=self.result_ttl)),
        )

    def _expired_before(self) -> str:
        """Index entries of tasks finished before this (epoch µs) have expired ('': none)."""
        if self.result_ttl is None:
            return ""
        return score(datetime.now(UTC) - timedelta(seconds=self.result_ttl))

    @staticmethod
    def _push_args(t: NewTask) -> list[str]:
        # The order of push_one's ARGV fields (redis_scripts.PUSH_FIELDS).
        return [
            str(uuid.UUID(t.id)),
            t.backend,
            t.queue_name,
            t.task_path,
            str(t.priority),
            "1" if t.takes_context else "0",
            json.dumps(t.args),
            json.dumps(t.kwargs),
            iso(t.run_after),
            iso(t.available_at),
            iso(t.enqueued_at),
            str(t.max_attempts),
            "" if t.timeout is None else repr(float(t.timeout)),
            t.unique_key or "",
            f"{stamp(t.available_at)}:{stamp(t.enqueued_at)}:{uuid.UUID(t.id)}",
            "" if t.trace_context is None else json.dumps(t.trace_context),
            t.concurrency_key or "",
            str(t.concurrency_limit),
            t.on_limit,
            t.rate_limit or "",
        ]

    @staticmethod
    def _task(fields: Mapping[str, str] | Sequence[str]) -> StoredTask:
        if not isinstance(fields, Mapping):  # a script's HGETALL: field, value, field, value…
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        available_at = from_iso(fields["available_at"])
        enqueued_at = from_iso(fields["enqueued_at"])
        assert available_at is not None and enqueued_at is not None
        return StoredTask(
            id=fields["id"],
            backend=fields["backend"],
            queue_name=fields["queue_name"],
            task_path=fields["task_path"],
            priority=int(fields["priority"]),
            takes_context=fields["takes_context"] == "1",
            status=fields["status"],
            # A corrupt row fails when it is run (TaskNotRunnable), not in the claim.
            args=load_json(fields["args"]),
            kwargs=load_json(fields["kwargs"]),
            run_after=from_iso(fields["run_after"]),
            available_at=available_at,
            enqueued_at=enqueued_at,
            started_at=from_iso(fields["started_at"]),
            last_attempted_at=from_iso(fields["last_attempted_at"]),
            finished_at=from_iso(fields["finished_at"]),
            return_value=json.loads(fields["return_value"]),
            errors=tuple(ErrorRecord(**e) for e in json.loads(fields["errors"])),
            worker_ids=tuple(json.loads(fields["worker_ids"])),
            max_attempts=int(fields["max_attempts"]),
            worker_id=fields["worker_id"],
            lease_expires_at=from_iso(fields["lease_expires_at"]),
            timeout=float(fields["timeout"]) if fields["timeout"] else None,
            unique_key=fields["unique_key"] or None,
            progress=json.loads(fields["progress"]),
            progress_at=from_iso(fields["progress_at"]),
            cancel_requested_at=from_iso(fields["cancel_requested_at"]),
            attempt_token=fields.get("attempt_token") or "",
            trace_context=json.loads(fields.get("trace_context") or "null"),
            concurrency_key=fields.get("concurrency_key") or None,
            concurrency_limit=int(fields.get("concurrency_limit") or 1),
            on_limit=fields.get("on_limit") or "wait",
            rate_limit=fields.get("rate_limit") or None,
        )

    def _lease_args(self, lease_until: datetime, now: datetime) -> tuple[str, str]:
        """A lease end for the scripts: (iso, epoch us), or ('', its length in us) when leases
        are on the store's clock (the script adds it to ``TIME``)."""
        if self.store_clock:
            return "", str((lease_until - now) // MICROSECOND)
        return iso(lease_until), score(lease_until)

    def _store_now(self, now: datetime) -> datetime:
        """Now on the lease clock: Redis's ``TIME``, or the caller's ``now``."""
        if not self.store_clock:
            return now
        seconds, micros = self.client.time()  # type: ignore[misc]
        return EPOCH + timedelta(seconds=int(seconds), microseconds=int(micros))

    # -- the contract --------------------------------------------------------------------------

    @store_errors
    def push(self, tasks: Sequence[NewTask]) -> list[str]:
        if not tasks:
            return []
        args = [field for t in tasks for field in self._push_args(t)]
        stored: list[str] = self._run("push", *args)
        # The task's own id as it was given (any spelling), or the active holder of its key.
        return [
            t.id if known == str(uuid.UUID(t.id)) else known
            for t, known in zip(tasks, stored, strict=True)
        ]

    @store_errors
    def get(self, task_id: str) -> StoredTask | None:
        canonical = _canonical(task_id)
        if canonical is None:
            return None
        fields: dict[str, str] = self.client.hgetall(self.key("task", canonical))  # type: ignore[assignment]
        return self._task(fields) if fields else None

    def describe(self) -> str:
        where = self.url or "a client given in code"
        return f"redis ({where}, prefix {self.prefix!r})"

    def listener(self, on_wake: Callable[[list[str]], None]) -> Listener | None:
        from tandem.brokers.listeners import RedisListener

        return RedisListener(self, on_wake)

    @store_errors
    def ping(self) -> None:
        self.client.ping()

    @store_errors
    def running(self, limit: int) -> list[StoredTask]:
        # Each queue's running set is ordered by lease end; the first ``limit`` of each is read,
        # then the tasks, ordered by start like the database's.
        members: set[str] = self.client.smembers(self.key(self.backend_alias, "queues"))  # type: ignore[assignment]
        pipe = self.client.pipeline(transaction=False)
        for queue in sorted(members):
            pipe.zrange(self.key(self.backend_alias, "running", queue), 0, max(0, limit - 1))
        ids = [task_id for found in pipe.execute() for task_id in found]
        if not ids or limit <= 0:
            return []
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(self.key("task", task_id))
        tasks = [self._task(fields) for fields in pipe.execute() if fields]
        tasks = [t for t in tasks if t.status == "RUNNING"]
        tasks.sort(key=lambda t: (t.started_at or t.enqueued_at, t.id))
        return tasks[:limit]

    @store_errors
    def has_ready(self, queues: Sequence[str], now: datetime) -> bool:
        if not queues:
            return False
        return bool(self._run("has_ready", self.backend_alias, stamp(now), *queues))

    @store_errors
    def claim(
        self,
        queues: Sequence[str],
        limit: int,
        worker_id: str,
        lease_until: datetime,
        now: datetime,
        *,
        rate_limit: str | None = None,
    ) -> list[StoredTask]:
        if limit <= 0 or not queues:
            return []
        claimed = self._run(
            "claim",
            self.backend_alias,
            limit,
            worker_id,
            json.dumps(worker_id),
            *self._lease_args(lease_until, now),
            iso(now),
            stamp(now),
            new_attempt_token(),
            *self._ttl_args(now),
            score(now),
            rate_limit or "",
            rates.pool_key(queues),
            *queues,
        )
        return [self._task(fields) for fields in claimed]

    @store_errors
    def renew(
        self, worker_id: str, attempts: Mapping[str, str], lease_until: datetime, now: datetime
    ) -> set[str]:
        pairs: list[str] = []
        for task_id, token in attempts.items():
            canonical = _canonical(task_id)
            if canonical is not None:
                pairs += [canonical, token]
        if not pairs:
            return set()
        held = self._run("renew", worker_id, *self._lease_args(lease_until, now), *pairs)
        return {str(i) for i in held}

    @store_errors
    def settle(self, settlements: Sequence[Settlement]) -> int:
        if not settlements:
            return 0
        ttl_ms = self._ttl_args(settlements[0].finished_at)[0]
        args: list[str] = []
        for s in settlements:
            if s.status == READY:
                assert s.retry_at is not None
            args += [
                str(uuid.UUID(s.id)),
                s.worker_id,
                s.status,
                iso(s.finished_at),
                score(s.finished_at),
                stamp(s.finished_at),
                json.dumps(s.return_value),
                "" if s.error is None else json.dumps(s.error.as_json()),
                iso(s.retry_at),
                "" if s.retry_at is None else stamp(s.retry_at),
                self._ttl_args(s.finished_at)[1],
                s.attempt_token,
            ]
        return int(self._run("settle", ttl_ms, *args))

    @store_errors
    def release(self, worker_id: str, attempts: Mapping[str, str], now: datetime) -> int:
        pairs: list[str] = []
        for task_id, token in attempts.items():
            canonical = _canonical(task_id)
            if canonical is not None:
                pairs += [canonical, token]
        if not pairs:
            return 0
        error = json.dumps(released_error(worker_id, now).as_json())
        return int(self._run("release", worker_id, iso(now), stamp(now), error, *pairs))

    @store_errors
    def recover_expired(self, now: datetime, recovery_max_attempts: int) -> list[Recovered]:
        # Read the expired leases, then recover each in one script guarded by the lease as read:
        # a lease renewed (or a task settled) in between is left alone.
        members: set[str] = self.client.smembers(self.key(self.backend_alias, "queues"))  # type: ignore[assignment]
        queues = sorted(members)
        expired_before = self._store_now(now)
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.zrangebyscore(
                self.key(self.backend_alias, "running", queue),
                "-inf",
                f"({score(expired_before)}",
                start=0,
                num=RECOVER_BATCH,
            )
        expired = [task_id for ids in pipe.execute() for task_id in ids]
        if not expired:
            return []
        pipe = self.client.pipeline(transaction=False)
        for task_id in expired:
            pipe.hmget(self.key("task", task_id), ["worker_id", "lease_expires_at"])
        args: list[str] = []
        for task_id, (worker_id, lease) in zip(expired, pipe.execute(), strict=True):
            if worker_id is None or lease is None:
                continue
            error = lost_lease_error(worker_id, from_iso(lease), now)
            args += [task_id, worker_id, lease, json.dumps(error.as_json())]
        ttl_ms, trim_below = self._ttl_args(now)
        recovered = self._run(
            "recover",
            recovery_max_attempts,
            iso(now),
            score(now),
            stamp(now),
            ttl_ms,
            trim_below,
            *args,
        )
        return [Recovered(id=i, status=status, worker_id=w) for i, status, w in recovered]

    @store_errors
    def cancel(self, task_id: str, now: datetime) -> str | None:
        canonical = _canonical(task_id)
        if canonical is None:
            return None
        error = json.dumps(cancelled_error(now, running=False).as_json())
        ttl_ms, trim_below = self._ttl_args(now)
        outcome = self._run(
            "cancel",
            self.backend_alias,
            canonical,
            iso(now),
            score(now),
            error,
            ttl_ms,
            trim_below,
            stamp(now),
        )
        return str(outcome) if outcome else None

    @store_errors
    def cancel_requested(self, task_ids: Sequence[str]) -> set[str]:
        ids = [i for i in map(_canonical, task_ids) if i is not None]
        if not ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(self.key("task", task_id), ["status", "cancel_requested_at"])
        return {
            task_id
            for task_id, (status, requested) in zip(ids, pipe.execute(), strict=True)
            if status == "RUNNING" and requested
        }

    @store_errors
    def save_progress(
        self, task_id: str, worker_id: str, data: Any, now: datetime, *, attempt_token: str
    ) -> bool:
        canonical = _canonical(task_id)
        if canonical is None:
            return False
        return bool(
            self._run(
                "save_progress", canonical, worker_id, json.dumps(data), iso(now), attempt_token
            )
        )

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
    def fire_tick(self, name: str, tick_at: datetime, task: NewTask) -> str | None:
        known = self._run(
            "fire_tick",
            self.backend_alias,
            name,
            score(tick_at),
            stamp(tick_at),
            *self._push_args(task),
        )
        if known is None:
            return None
        return task.id if known == str(uuid.UUID(task.id)) else str(known)

    @store_errors
    def prune_ticks(self, name: str, recorded_before: datetime) -> int:
        return int(self._run("prune_ticks", self.backend_alias, name, score(recorded_before)))

    @store_errors
    def last_tick(self, name: str) -> datetime | None:
        newest: list[str] = self.client.zrange(self.key(self.backend_alias, "ticks", name), -1, -1)  # type: ignore[assignment]
        return from_stamp(newest[0]) if newest else None

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

    # -- the starvation claim ------------------------------------------------------------------

    @store_errors
    def claim_starved(
        self,
        queues: Sequence[str],
        limit: int,
        worker_id: str,
        lease_until: datetime,
        now: datetime,
        starved_before: datetime,
        *,
        rate_limit: str | None = None,
    ) -> list[StoredTask]:
        if limit <= 0 or not queues:
            return []
        claimed = self._run(
            "claim_starved",
            self.backend_alias,
            limit,
            worker_id,
            json.dumps(worker_id),
            *self._lease_args(lease_until, now),
            iso(now),
            stamp(now),
            new_attempt_token(),
            stamp(min(starved_before, now)),
            *self._ttl_args(now),
            score(now),
            rate_limit or "",
            rates.pool_key(queues),
            *queues,
        )
        return [self._task(fields) for fields in claimed]

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
            candidates = [i for i in map(_canonical, ids) if i is not None]
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
            canonical = _canonical(task_id)
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

    # -- worker registry -----------------------------------------------------------------------

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


__all__ = ["RedisBroker"]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""The Redis store: tasks in hashes, queues in sorted sets, every transition one Lua script (but
the push of tasks without a unique key: plain writes in one ``MULTI``, ``redis_codec.plain_push``).

The scripts and the key layout are in ``redis_scripts``; value encodings in ``redis_codec``; the
queue-wide operations (prune, stats, selections, pauses), the worker registry and workflows are
mixed in from ``redis_queues``, ``redis_registry`` and ``redis_workflow``. What differs from the
database store:

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
    READY,
    Broker,
    NewTask,
    Recovered,
    Settlement,
    StoredTask,
    cancelled_error,
    lost_lease_error,
    new_attempt_token,
    released_error,
)
from tandem.brokers.redis_client import command, store_errors, transaction, transaction_request
from tandem.brokers.redis_codec import (
    EPOCH,
    MICROSECOND,
    ORIGIN,
    canonical_id,
    from_iso,
    from_stamp,
    iso,
    pack,
    plain_push,
    plain_push_request,
    push_arg,
    score,
    stamp,
    stored_task,
)
from tandem.brokers.redis_queues import RedisQueues
from tandem.brokers.redis_registry import RedisWorkerRegistry
from tandem.brokers.redis_scripts import SOURCES
from tandem.brokers.redis_workflow import RedisWorkflows
from tandem.conf import DEFAULT_REDIS_PREFIX, DEFAULT_RESULT_TTL

if TYPE_CHECKING:
    from tandem.brokers.listeners import Listener

#: Expired leases recovered per queue and heartbeat.
RECOVER_BATCH = 500


class RedisBroker(RedisWorkflows, RedisQueues, RedisWorkerRegistry, Broker):
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
        # register_script: each script's text and SHA1 (``_run`` calls it by EVALSHA).
        self._scripts: dict[str, Script] = {
            name: client.register_script(source) for name, source in SOURCES.items()
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
        # EVALSHA, packed here (``redis_client.command``): every enqueue with a unique key and
        # every claim and settle runs one. After a NOSCRIPT reply the script is loaded again
        # and the call retried.
        script = self._scripts[name]
        request = ["EVALSHA", script.sha, "0", self.prefix]
        request += [a if isinstance(a, str) else str(a) for a in args]
        try:
            return command(self.client, request)
        except redis.exceptions.NoScriptError:
            script.sha = request[1] = self.client.script_load(script.script)
            return command(self.client, request)

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

    _push_arg = staticmethod(push_arg)
    _task = staticmethod(stored_task)

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
        if len(tasks) == 1 and not tasks[0].unique_key:
            # One enqueue(): its request packed in one go (``plain_push_request``), on a client
            # with a pool (a single-connection client takes the commands, as do non-ASCII keys).
            request = None
            if getattr(self.client, "connection", None) is None:
                request = plain_push_request(self.prefix, tasks[0])
            if request is not None:
                transaction_request(self.client, *request)
                return [tasks[0].id]
        if not any(t.unique_key for t in tasks):
            # Nothing to look up first: the writes alone, in one MULTI (``plain_push``).
            transaction(self.client, plain_push(self.prefix, tasks))
            return [t.id for t in tasks]
        stored: list[str] = self._run("push", *[self._push_arg(t) for t in tasks])
        # The task's own id as it was given (any spelling), or the active holder of its key.
        return [
            t.id if known == t.id or known == canonical_id(t.id) else known
            for t, known in zip(tasks, stored, strict=True)
        ]

    @store_errors
    def get(self, task_id: str) -> StoredTask | None:
        canonical = canonical_id(task_id)
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
        return [self._task(json.loads(fields)) for fields in claimed]

    @store_errors
    def renew(
        self, worker_id: str, attempts: Mapping[str, str], lease_until: datetime, now: datetime
    ) -> set[str]:
        pairs: list[str] = []
        for task_id, token in attempts.items():
            canonical = canonical_id(task_id)
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
        dumps = json.dumps
        fields: list[str] = []
        for s in settlements:
            finished = s.finished_at
            retry_at = s.retry_at
            if s.status == READY:
                assert retry_at is not None
            fields += [
                str(uuid.UUID(s.id)),
                s.worker_id,
                s.status,
                iso(finished),
                score(finished),
                stamp(finished),
                dumps(s.return_value),
                "" if s.error is None else dumps(s.error.as_json()),
                "" if retry_at is None else iso(retry_at),
                "" if retry_at is None else stamp(retry_at),
                self._ttl_args(finished)[1],
                s.attempt_token,
            ]
        # One packed argument, not 12 per settlement: redis-py's packing costs per argument.
        return int(self._run("settle", ttl_ms, pack(fields)))

    @store_errors
    def release(self, worker_id: str, attempts: Mapping[str, str], now: datetime) -> int:
        pairs: list[str] = []
        for task_id, token in attempts.items():
            canonical = canonical_id(task_id)
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
        canonical = canonical_id(task_id)
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
        ids = [i for i in map(canonical_id, task_ids) if i is not None]
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
        canonical = canonical_id(task_id)
        if canonical is None:
            return False
        return bool(
            self._run(
                "save_progress", canonical, worker_id, json.dumps(data), iso(now), attempt_token
            )
        )

    # -- schedule ticks ------------------------------------------------------------------------

    @store_errors
    def fire_tick(self, name: str, tick_at: datetime, task: NewTask) -> str | None:
        known = self._run(
            "fire_tick",
            self.backend_alias,
            name,
            score(tick_at),
            stamp(tick_at),
            self._push_arg(task),
        )
        if known is None:
            return None
        return task.id if known in (task.id, canonical_id(task.id)) else str(known)

    @store_errors
    def prune_ticks(self, name: str, recorded_before: datetime) -> int:
        return int(self._run("prune_ticks", self.backend_alias, name, score(recorded_before)))

    @store_errors
    def last_tick(self, name: str) -> datetime | None:
        newest: list[str] = self.client.zrange(self.key(self.backend_alias, "ticks", name), -1, -1)  # type: ignore[assignment]
        return from_stamp(newest[0]) if newest else None

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
        return [self._task(json.loads(fields)) for fields in claimed]


# The value encodings live in redis_codec; these names stay importable from here.
__all__ = [
    "EPOCH",
    "MICROSECOND",
    "ORIGIN",
    "RedisBroker",
    "from_iso",
    "from_stamp",
    "iso",
    "score",
    "stamp",
]

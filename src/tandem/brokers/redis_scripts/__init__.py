"""The Lua scripts of the Redis store: one script per state transition, each atomic in Redis.

Every script starts with ``PRELUDE`` (shared helpers; ``PUSH`` with ``PUSH_PRELUDE``, the few it
uses) and gets the key prefix as ``ARGV[1]``. Keys (``P`` is the prefix, ``B`` a backend alias,
``Q`` a queue name):

- ``P:task:<id>`` — HASH, the task (the ``StoredTask`` fields, plus ``rank`` and ``attempts``);
  shared by all aliases, as the database table is. A push stores ``id``, ``backend``,
  ``queue_name``, ``task_path``, ``priority``, ``status``, ``args``, ``kwargs``,
  ``enqueued_at``, ``max_attempts`` and ``rank``, and the other fields only when they differ from
  their defaults; a missing field reads as its default ('' / ``null`` / ``[]`` / 0 attempts /
  ``available_at`` = ``enqueued_at``), so every script must treat a missing field (Lua ``false``)
  as it treats the default. Hashes of earlier versions have every field and read the same;
- ``P:B:ready:Q`` — ZSET of READY tasks available to claim, score ``-priority``, member ``rank``
  = ``<available_at stamp>:<enqueued_at stamp>:<id>``; equal scores sort by member, so one
  ``ZRANGE`` gives the claim order (priority, then available_at, then enqueued_at);
- ``P:B:delayed:Q`` — ZSET (all scores 0, read by ``ZRANGEBYLEX``) of READY tasks not yet
  available, member ``rank``; a claim moves the due ones to the ready set;
- ``P:B:running:Q`` — ZSET of RUNNING tasks, score ``lease_expires_at`` (epoch µs), member id;
- ``P:B:successful:Q``, ``P:B:failed:Q`` — ZSETs of finished tasks, score ``finished_at``
  (epoch µs), member id (for ``stats`` and ``prune``);
- ``P:B:queues`` — SET of the queue names the alias has used;
- ``P:B:paused`` — HASH paused queue name -> when it was paused (ISO 8601); claims skip them;
- ``P:B:unique`` — HASH unique key -> id of the READY or RUNNING task holding it;
- ``P:B:slots:<key>`` — HASH task id -> attempt token: the running attempts holding one of a
  concurrency key's slots (at most the task's ``concurrency_limit``); taken by a claim, deleted
  by that attempt's settle, release or recovery;
- ``P:B:rate:<limit key>`` — ZSET of the starts (score: epoch us on the claim's clock) of a rate
  limit's window (``task:<path>``, or ``pool:<queues>`` for a pool's); ``P:B:rates`` — HASH limit
  key -> its rate, for the status page;
- ``P:B:ticks:<schedule>`` — ZSET of recorded schedule ticks, score epoch µs, member stamp;
- ``P:B:workers`` — ZSET of registered workers, score last heartbeat (epoch µs);
  ``P:worker:<id>`` — HASH, one worker;
- workflows (``brokers.workflow``): ``P:parents:<id>`` / ``P:children:<id>`` — LISTs of a task's
  parents (in the order given) and of the tasks waiting for it; a waiting task's hash also has
  ``waiting`` (unfinished parents), ``failed_parents``, ``on_parent_failure`` and
  ``pass_result``, and it is in no ready or delayed set until ``finish`` of its last parent
  resolves it; ``P:group:<id>`` — HASH, a group; ``P:group:<id>:members`` — LIST of its task ids;
  ``P:B:groups`` — ZSET of the alias's groups, score created_at (epoch µs);
- ``P:B:wake`` — the pub/sub channel the scripts publish to when tasks become claimable
  (message: comma-separated queue names).

A *stamp* is a datetime as 18 zero-padded digits of microseconds since 0001-01-01 UTC: stamps of
equal length compare as strings exactly as the datetimes compare, with no float rounding.

Scripts compute key names from the ids they read (a claim cannot know them beforehand), so the
store needs a single Redis primary: Redis Cluster is not supported.

The scripts live by concern: ``prelude`` (the shared helpers), ``enqueue`` (push, workflows,
schedule ticks), ``claim`` (claim and lease renewal), ``settle`` (settle, release, recover,
cancel, progress), ``queues`` (prune, stats, pause, retry) and ``workers`` (the registry).
"""

from __future__ import annotations

from tandem.brokers.redis_scripts.claim import (
    CLAIM,
    CLAIM_STARVED,
    HAS_READY,
    RENEW,
)
from tandem.brokers.redis_scripts.enqueue import (
    FIRE_TICK,
    PUSH,
    PUSH_WORKFLOW,
)
from tandem.brokers.redis_scripts.prelude import (
    PRELUDE,
    PUSH_PRELUDE,
)
from tandem.brokers.redis_scripts.queues import (
    COUNT_FINISHED,
    PAUSE,
    PRUNE,
    PRUNE_TICKS,
    RESUME,
    RETRY_FAILED,
    STATS,
)
from tandem.brokers.redis_scripts.settle import (
    CANCEL,
    RECOVER,
    RELEASE,
    SAVE_PROGRESS,
    SETTLE,
    SETTLE_FIELDS,
)
from tandem.brokers.redis_scripts.workers import (
    FORGET_WORKERS,
    HEARTBEAT_WORKER,
    REGISTER_WORKER,
    UNREGISTER_WORKER,
)

#: Every script by name, without the prelude.
SCRIPTS = {
    "push": PUSH,
    "claim": CLAIM,
    "has_ready": HAS_READY,
    "renew": RENEW,
    "settle": SETTLE,
    "release": RELEASE,
    "recover": RECOVER,
    "cancel": CANCEL,
    "save_progress": SAVE_PROGRESS,
    "prune": PRUNE,
    "count_finished": COUNT_FINISHED,
    "fire_tick": FIRE_TICK,
    "push_workflow": PUSH_WORKFLOW,
    "prune_ticks": PRUNE_TICKS,
    "stats": STATS,
    "register_worker": REGISTER_WORKER,
    "heartbeat_worker": HEARTBEAT_WORKER,
    "unregister_worker": UNREGISTER_WORKER,
    "forget_workers": FORGET_WORKERS,
    "pause": PAUSE,
    "resume": RESUME,
    "retry_failed": RETRY_FAILED,
    "claim_starved": CLAIM_STARVED,
}

#: Every script's whole text: ``PUSH`` (run by every enqueue) with only the helpers it uses, the
#: others with the whole prelude.
SOURCES = {
    name: (PUSH_PRELUDE if name == "push" else PRELUDE) + source for name, source in SCRIPTS.items()
}


__all__ = [
    "CANCEL",
    "CLAIM",
    "CLAIM_STARVED",
    "COUNT_FINISHED",
    "FIRE_TICK",
    "FORGET_WORKERS",
    "HAS_READY",
    "HEARTBEAT_WORKER",
    "PAUSE",
    "PRELUDE",
    "PRUNE",
    "PRUNE_TICKS",
    "PUSH",
    "PUSH_PRELUDE",
    "PUSH_WORKFLOW",
    "RECOVER",
    "REGISTER_WORKER",
    "RELEASE",
    "RENEW",
    "RESUME",
    "RETRY_FAILED",
    "SAVE_PROGRESS",
    "SCRIPTS",
    "SETTLE",
    "SETTLE_FIELDS",
    "SOURCES",
    "STATS",
    "UNREGISTER_WORKER",
]

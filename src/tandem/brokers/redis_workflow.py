"""Workflows on the Redis store: one Lua script stores a workflow (``PUSH_WORKFLOW``); the
``finish`` helper every ending script shares resolves waiting children in the same script."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from tandem.brokers.base import NewTask
from tandem.brokers.redis_client import store_errors
from tandem.brokers.redis_codec import EPOCH, MICROSECOND, canonical_id, iso, score, stamp
from tandem.brokers.workflow import Dependency, GroupSpec, GroupState, check_dependencies

if TYPE_CHECKING:
    import redis


class RedisWorkflows:
    """Mixed into ``RedisBroker``."""

    backend_alias: str
    prefix: str

    if TYPE_CHECKING:  # provided by RedisBroker
        client: redis.Redis

        def _run(self, name: str, *args: str | int) -> Any:
            raise NotImplementedError

        def key(self, *parts: str) -> str:
            raise NotImplementedError

        def _ttl_args(self, finished_at: datetime) -> tuple[str, str]:
            raise NotImplementedError

        @staticmethod
        def _push_arg(t: NewTask) -> str:
            raise NotImplementedError

    @store_errors
    def push_workflow(
        self,
        tasks: Sequence[NewTask],
        dependencies: Sequence[Dependency] = (),
        group: GroupSpec | None = None,
    ) -> list[str]:
        if any(t.unique_key is not None for t in tasks):
            raise ValueError("unique tasks cannot be part of a workflow")
        check_dependencies(dependencies, [t.id for t in tasks])
        now = max((t.enqueued_at for t in tasks), default=timezone.now())
        ttl_ms, trim_below = self._ttl_args(now)
        args: list[str | int] = [iso(now), stamp(now), score(now), ttl_ms, trim_below, len(tasks)]
        for t in tasks:
            args.append(self._push_arg(t))
        args.append(len(dependencies))
        for dep in dependencies:
            args += [
                dep.task_id,
                dep.on_parent_failure,
                "1" if dep.pass_result else "0",
                len(dep.parent_ids),
                *dep.parent_ids,
            ]
        if group is None:
            args.append("")
        else:
            args += [
                group.id,
                group.backend,
                score(group.created_at),
                group.then_id or "",
                len(group.member_ids),
                *group.member_ids,
            ]
        answer = self._run("push_workflow", *args)
        if answer and answer[0] == "missing":
            raise ValueError(
                f"parent task {answer[1]} does not exist in backend {self.backend_alias!r}"
            )
        return [str(i) for i in answer]

    @store_errors
    def parent_ids(self, task_id: str) -> list[str]:
        key = canonical_id(task_id)
        if key is None:
            return []
        return [str(i) for i in self.client.lrange(self.key("parents", key), 0, -1)]  # type: ignore[union-attr]

    @store_errors
    def child_ids(self, task_id: str) -> list[str]:
        key = canonical_id(task_id)
        if key is None:
            return []
        return [str(i) for i in self.client.lrange(self.key("children", key), 0, -1)]  # type: ignore[union-attr]

    @store_errors
    def get_group(self, group_id: str) -> GroupState | None:
        key = canonical_id(group_id)
        if key is None:
            return None
        fields: dict[str, str] = self.client.hgetall(self.key("group", key))  # type: ignore[assignment]
        if not fields or fields.get("backend") != self.backend_alias:
            return None
        members = self.client.lrange(self.key("group", key, "members"), 0, -1)
        return GroupState(
            id=key,
            backend=fields["backend"],
            created_at=EPOCH + int(fields["created_at"]) * MICROSECOND,
            member_ids=tuple(str(m) for m in members),  # type: ignore[union-attr]
            then_id=fields.get("then_id") or None,
        )

    @store_errors
    def finished_count(self, task_ids: Sequence[str]) -> int:
        pipeline = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipeline.hget(self.key("task", str(task_id)), "status")
        return sum(status in ("SUCCESSFUL", "FAILED") for status in pipeline.execute())

    @store_errors
    def recent_groups(self, limit: int) -> list[GroupState]:
        ids = self.client.zrevrange(self.key(self.backend_alias, "groups"), 0, limit - 1)
        groups = [self.get_group(str(i)) for i in ids]  # type: ignore[union-attr]
        return [g for g in groups if g is not None]


__all__ = ["RedisWorkflows"]

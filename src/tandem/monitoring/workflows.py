"""Workflows on the monitoring side: a group's progress, for ``tandem status --json``, the
dashboard's status JSON and the admin."""

from __future__ import annotations

from typing import Any

from tandem.backends.base import TandemBackend

#: Groups listed by ``tandem status --json``: the newest ones.
STATUS_GROUPS = 20


def groups_json(backend: TandemBackend, limit: int = STATUS_GROUPS) -> list[dict[str, Any]]:
    """The backend's newest groups with their progress (done/total), newest first."""
    broker = backend.broker
    groups = []
    for group in broker.recent_groups(limit):
        done = broker.finished_count(group.member_ids)
        total = len(group.member_ids)
        groups.append(
            {
                "id": group.id,
                "created_at": group.created_at.isoformat(),
                "done": done,
                "total": total,
                "finished": done == total,
                "then_id": group.then_id,
            }
        )
    return groups


__all__ = ["STATUS_GROUPS", "groups_json"]

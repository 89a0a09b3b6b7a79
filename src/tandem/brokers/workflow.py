"""Workflows in the broker contract: tasks that wait for other tasks, and groups.

A *waiting* task is stored READY but is not claimable: on the database its ``available_at`` is
``WAITING_UNTIL`` (so the claim's index range ``available_at <= now`` never reaches it), on Redis
it is in no ready or delayed set, in the memory twin it is skipped by the claim. The write that
finishes its last unfinished parent — a settlement, a cancellation, or a recovery that gives up —
also resolves it, in the same transaction (the same Lua script on Redis):

- every parent SUCCESSFUL, or ``on_parent_failure="run"``: it becomes claimable now (or at its
  ``run_after``, when later); a chain step also gets its parent's return value as its first
  positional argument;
- a parent FAILED and ``on_parent_failure="fail"``: it ends FAILED with a ``DependencyFailed``
  error without running, which in turn resolves its own children.

A retried parent (settled READY again) leaves its children waiting: only a final ending counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tandem.brokers.base import ErrorRecord

#: ``available_at`` of a waiting task on the database: later than any real moment.
WAITING_UNTIL = datetime(9999, 12, 31, tzinfo=UTC)

ON_PARENT_FAILURE = ("fail", "run")


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """A task (pushed in the same call) that waits for ``parent_ids`` to finish."""

    task_id: str
    parent_ids: tuple[str, ...]
    on_parent_failure: str = "fail"
    #: A chain step: its single parent's return value is prepended to its arguments.
    pass_result: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpec:
    """A group to record with its members (pushed in the same call)."""

    id: str
    backend: str
    created_at: datetime
    member_ids: tuple[str, ...]
    then_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupState:
    """A stored group: its members in order and its callback."""

    id: str
    backend: str
    created_at: datetime
    member_ids: tuple[str, ...]
    then_id: str | None


def dependency_failed_error(task_id: str, failed: int, now: datetime) -> ErrorRecord:
    """The error recorded for a waiting task that ends FAILED because a parent did."""
    return ErrorRecord(
        exception_class_path="tandem.exceptions.DependencyFailed",
        traceback=dependency_failed_text(task_id, failed, now.isoformat()),
    )


def dependency_failed_text(task_id: str, failed: int | str, now_iso: str) -> str:
    return (
        f"tandem.exceptions.DependencyFailed: task {task_id} did not run: {failed} of its "
        f"parent tasks ended FAILED (resolved at {now_iso}), and it was enqueued with "
        'on_parent_failure="fail".\n'
    )


def check_dependencies(dependencies: Sequence[Dependency], pushed: Sequence[str]) -> None:
    """Refuse dependencies that name a task not pushed in the same call, or a bad policy."""
    ids = set(pushed)
    for dependency in dependencies:
        if dependency.task_id not in ids:
            raise ValueError(f"dependency names task {dependency.task_id}, not pushed with it")
        if dependency.on_parent_failure not in ON_PARENT_FAILURE:
            raise ValueError(
                f"on_parent_failure must be 'fail' or 'run', got {dependency.on_parent_failure!r}"
            )
        if dependency.pass_result and len(dependency.parent_ids) != 1:
            raise ValueError("a chain step (pass_result) waits for exactly one parent")


__all__ = [
    "ON_PARENT_FAILURE",
    "WAITING_UNTIL",
    "Dependency",
    "GroupSpec",
    "GroupState",
    "check_dependencies",
    "dependency_failed_error",
]

"""Rate limits: ``"N/s"``, ``"N/m"`` or ``"N/h"`` — at most N starts in any window of that length.

A task's ``rate_limit`` counts the starts (claims) of that task path; a pool's ``rate_limit``
option counts the starts of every task of its queues. Both are enforced by the store inside the
claim, on the store's clock, across every worker and host: a task over its rate stays READY (not
claimed, no attempt counted) and is claimed once a start leaves the window.

This module holds what every store shares: parsing and the sliding-window arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: The window of each unit, in seconds.
UNITS = {"s": 1, "m": 60, "h": 3600}
#: The longest rate string stored (the database column's length).
MAX_RATE = 32
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")


class InvalidRate(ValueError):
    """A rate string that is not ``"N/s"``, ``"N/m"`` or ``"N/h"`` with N >= 1."""


def parse_rate(value: object) -> tuple[int, int]:
    """``(N, window in seconds)`` of a rate string; raises ``InvalidRate`` with the reason."""
    if not isinstance(value, str):
        raise InvalidRate(
            f'must be a string "N/s", "N/m" or "N/h" (N an integer >= 1), got {value!r}.'
        )
    match = _RATE.match(value)
    if match is None or len(value) > MAX_RATE:
        raise InvalidRate(
            f'must be "N/s", "N/m" or "N/h" (N an integer >= 1: at most N starts in any '
            f"second, minute or hour), got {value!r}."
        )
    count = int(match.group(1))
    if count < 1:
        raise InvalidRate(f"must allow at least one start (N >= 1), got {value!r}.")
    return count, UNITS[match.group(2)]


def normalize(value: str) -> str:
    """The stored form of a valid rate string (``" 5 / s "`` -> ``"5/s"``)."""
    count, window = parse_rate(value)
    unit = next(u for u, seconds in UNITS.items() if seconds == window)
    return f"{count}/{unit}"


def task_key(task_path: str) -> str:
    """The limit key of a task's own rate (its dotted path)."""
    return f"task:{task_path}"


def pool_key(queues: Sequence[str]) -> str:
    """The limit key of a pool's rate: every task of its queues."""
    return "pool:" + ",".join(sorted(queues))


def allowance(starts: Sequence[float], count: int, window: float, now: float) -> int:
    """How many more starts fit at ``now`` (epoch seconds) given the recorded ``starts``: a
    start at ``t`` counts while ``now - t < window``."""
    recent = sum(1 for t in starts if now - t < window)
    return max(count - recent, 0)


def prune(starts: Sequence[float], window: float, now: float) -> list[float]:
    """The ``starts`` still inside the window, oldest first."""
    return sorted(t for t in starts if now - t < window)


def free_at(starts: Sequence[float], count: int, window: float) -> float | None:
    """When (epoch seconds) the next start fits, for a full window (``starts`` pruned and
    sorted); None when one fits now."""
    if len(starts) < count:
        return None
    return starts[len(starts) - count] + window


__all__ = [
    "InvalidRate",
    "allowance",
    "free_at",
    "normalize",
    "parse_rate",
    "pool_key",
    "prune",
    "task_key",
]

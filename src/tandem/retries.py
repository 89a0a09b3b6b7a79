"""Retry policy: exponential back-off with jitter."""

from __future__ import annotations

import random
from datetime import timedelta

MAX_BACKOFF_SECONDS = 3600.0


def backoff_delay(attempt: int, base: float, *, rng: random.Random | None = None) -> timedelta:
    """Delay before the retry that follows failed attempt number ``attempt`` (1-based).

    ``base * 2 ** (attempt - 1)`` seconds, capped at an hour, scaled by a random factor in
    [0.5, 1.0] so that tasks failing together do not retry together.
    """
    try:
        raw = min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempt - 1))
    except OverflowError:  # 2 ** 1024 and up do not fit a float: far past the cap anyway
        raw = MAX_BACKOFF_SECONDS
    return timedelta(seconds=raw * (rng or random).uniform(0.5, 1.0))

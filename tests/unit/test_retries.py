"""backoff_delay: exponential in the attempt number, jittered down to half, capped at an hour."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tandem.retries import MAX_BACKOFF_SECONDS, backoff_delay


class FixedJitter:
    """A stand-in for ``random.Random`` that returns a fixed point of the requested range."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return a + (b - a) * self.fraction


def seconds(attempt: int, base: float, fraction: float) -> float:
    return backoff_delay(attempt, base, rng=FixedJitter(fraction)).total_seconds()  # type: ignore[arg-type]


def test_grows_exponentially():
    assert [seconds(n, 2.0, 1.0) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert [seconds(n, 0.5, 1.0) for n in range(1, 4)] == [0.5, 1.0, 2.0]


def test_jitter_scales_by_half_to_one():
    jitter = FixedJitter(0.0)

    assert backoff_delay(3, 10.0, rng=jitter) == timedelta(seconds=20)  # type: ignore[arg-type]
    assert jitter.ranges == [(0.5, 1.0)]
    assert seconds(3, 10.0, 1.0) == 40.0
    assert seconds(3, 10.0, 0.5) == 30.0


def test_jitter_stays_in_range_with_a_real_generator():
    rng = random.Random(1234)
    delays = [backoff_delay(4, 1.0, rng=rng).total_seconds() for _ in range(500)]

    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 400  # jittered: tasks failing together do not retry together


def test_attempt_zero_or_less_is_treated_as_the_first():
    assert seconds(0, 3.0, 1.0) == seconds(1, 3.0, 1.0) == 3.0
    assert seconds(-4, 3.0, 1.0) == 3.0


def test_capped_at_an_hour_before_jitter():
    assert seconds(13, 1.0, 1.0) == MAX_BACKOFF_SECONDS == 3600.0  # 2 ** 12 = 4096 > 3600
    assert seconds(13, 1.0, 0.0) == 1800.0
    assert seconds(12, 1.0, 1.0) == 2048.0


@pytest.mark.parametrize("attempt", [1025, 5000, 32767])
def test_capped_for_attempts_past_float_range(attempt):
    # 2 ** 1024 does not fit a float; max_attempts may be as high as 32767.
    assert seconds(attempt, 2.0, 1.0) == MAX_BACKOFF_SECONDS


def test_uses_the_module_random_by_default():
    state = random.getstate()
    try:
        random.seed(99)
        first = backoff_delay(2, 5.0)
        random.seed(99)
        second = backoff_delay(2, 5.0)
    finally:
        random.setstate(state)

    assert second == first
    assert timedelta(seconds=5) <= first <= timedelta(seconds=10)

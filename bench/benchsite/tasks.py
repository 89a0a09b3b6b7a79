"""The benchmark's tasks: ``noop`` (tandem's overhead alone), ``mark`` (``bench/compare``'s task,
the same one every peer runs) and CPU-bound work for ``bench/serve.py``."""

import time

from contenders import marks
from django.tasks import task

from tandem import task as tandem_task


@task
def noop() -> None:
    return None


@tandem_task(concurrency_key="bench", concurrency_limit=1000)
def noop_keyed() -> None:
    """``noop`` under a concurrency key whose limit never binds: the cost of the slot alone."""
    return None


@tandem_task(rate_limit="1000000/s")
def noop_rated() -> None:
    """``noop`` under a rate limit that never binds: the cost of the shared window alone."""
    return None


@tandem_task(concurrency_key="bench", concurrency_limit=1000, rate_limit="1000000/s")
def noop_keyed_rated() -> None:
    """Both: a concurrency key and a rate limit, neither binding."""
    return None


@task
def mark(stamp: float = 0.0) -> None:
    """Append ``<done time> <stamp>`` to ``$BENCH_MARKS`` (see ``bench/contenders/marks.py``)."""
    marks.mark(stamp)


@task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
def count_primes(below: int) -> int:
    """CPU-bound pure Python: trial division."""
    count = 0
    for n in range(2, below):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


@task
def spin(seconds: float) -> int:
    """CPU-bound pure Python for ``seconds``."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


@task
async def async_sleep(seconds: float) -> float:
    """Waits ``seconds`` on the event loop (an I/O-bound task written as a coroutine)."""
    import asyncio

    await asyncio.sleep(seconds)
    return seconds


def group_report(group_id: str) -> str:
    """A group's ``then`` (``bench/workflows.py``): returns the group id it was given."""
    return group_id

#!/usr/bin/env python
"""arq (an asyncio-native Redis task queue) on ``bench/async_drain.py``'s workload: N jobs each
awaiting ``asyncio.sleep(seconds)``, drained by ONE burst worker with ``max_jobs`` (arq's
coroutines in flight, like tandem's ``async_concurrency``) 100.

    python -m venv /tmp/arq && /tmp/arq/bin/pip install arq
    /tmp/arq/bin/python bench/peers/arq_async_drain.py [--tasks 1000] [--seconds 0.1]

Redis at 127.0.0.1:6379, database 9 (flushed first). Timed like tandem's run: from the start of a
fresh ``arq`` worker process to its exit, the jobs stored before.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

from arq import create_pool
from arq.connections import RedisSettings

REDIS = RedisSettings(host="127.0.0.1", port=6379, database=9)


async def nap(ctx: dict, seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


class WorkerSettings:
    functions = [nap]
    redis_settings = REDIS
    max_jobs = 100
    burst = True
    keep_result = 60


async def fill(count: int, seconds: float) -> None:
    redis = await create_pool(REDIS)
    await redis.flushdb()
    for _ in range(count):
        await redis.enqueue_job("nap", seconds)
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(fill(args.tasks, args.seconds))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "arq", "arq_async_drain.WorkerSettings"],
        cwd=__file__.rsplit("/", 1)[0],
        check=True,
        capture_output=True,
    )
    took = time.perf_counter() - started
    print(f"| arq (max_jobs 100) | {args.tasks} | {took:.2f} | {args.tasks / took:.0f} |")


if __name__ == "__main__":
    main()

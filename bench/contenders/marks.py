"""The one line every contender's task writes: ``<done time> <stamp>`` appended to ``$BENCH_MARKS``.

One ``write`` of a short line to a file opened with O_APPEND is atomic across processes, so workers
in several processes (or threads) can share the file; the harness counts lines to see completions
and subtracts the two numbers to get the pickup latency of tasks enqueued with a stamp.
"""

import os
import time


def mark(stamp: float = 0.0) -> None:
    with open(os.environ["BENCH_MARKS"], "a") as f:
        f.write(f"{time.time():.6f} {float(stamp):.6f}\n")

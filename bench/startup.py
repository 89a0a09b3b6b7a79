#!/usr/bin/env python
"""``tandem serve -w 2`` on SQLite: start-up time and idle memory, per executor.

    .venv-3.14/bin/python bench/startup.py [--rounds 5] [--executors subinterpreter thread]
                                           [--burst 200] [--idle 5] [--workers 2]

Each round, for each executor (``default`` is tandem's default executor: subinterpreters on
Python 3.14), against ``bench/benchsite`` on a fresh SQLite file (WAL):

1. **start-up** — one ``mark`` task is enqueued, then ``tandem serve -w 2`` is spawned; start-up is
   the time from just before the spawn to the task's completion stamp, the way
   ``bench/compare`` measures "start-up s" (process start to first task done);
2. **idle after start** — once the process is quiet (under 5 % of a core for 0.5 s) and 1 s more:
   the RSS and PSS of the process (``/proc``);
3. **idle after a burst** — ``--burst`` more ``mark`` tasks enqueued at once
   (``tandem.enqueue_many``), drained (the drain's time: first to last burst task done), then
   ``--idle`` seconds without work: RSS and PSS again.

``--src A/src B/src`` runs every round once per tandem source tree (interleaved A/B).

Prints a table of medians (and ranges) on stdout; raw numbers go to stderr as JSON with
``--json``. The machine's load matters: the numbers are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import BENCH, free_port, in_django, log, machine_info, stop, tree_memory
from common import wait_until_quiet as quiet

ENQUEUE = """
import sys
import tandem
from benchsite.tasks import mark
n = int(sys.argv[1])
if n == 1:
    mark.enqueue()
else:
    tandem.enqueue_many(mark, [((), {}) for _ in range(n)])
"""


def marks(path: Path) -> list[float]:
    try:
        return [float(line.split()[0]) for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        return []


def wait_marks(path: Path, count: int, proc: subprocess.Popen[bytes], limit: float) -> list[float]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = marks(path)
        if len(found) >= count:
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}")
        time.sleep(0.002)
    raise RuntimeError(f"{len(marks(path))} of {count} tasks done after {limit:g}s")


def one_round(
    directory: Path, executor: str, args: argparse.Namespace, number: int, src: str = ""
) -> dict[str, Any]:
    label = f"{executor}-{len(src)}-{abs(hash(src))}"
    sqlite = directory / f"startup-{label}-{number}.sqlite3"
    marks_file = directory / f"marks-{label}-{number}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    # Byte code cached, as in a deployment (and as ``bench/compare`` runs): with
    # PYTHONDONTWRITEBYTECODE set (some images do), every start would compile tandem's sources,
    # about 0.08 s of the start-up measured here.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    src = src or str(BENCH.parent / "src")
    env.update(
        DJANGO_SETTINGS_MODULE="benchsite.settings",
        PYTHONPATH=os.pathsep.join([str(BENCH), src]),
        PYTHONUNBUFFERED="1",
        BENCH_DB="sqlite",
        BENCH_SQLITE_PATH=str(sqlite),
        BENCH_SQLITE_SYNCHRONOUS="NORMAL",
        BENCH_MARKS=str(marks_file),
    )
    if executor != "default":
        env["BENCH_EXECUTOR"] = executor
    in_django(env, "from django.core.management import call_command\ncall_command('migrate')")
    in_django(env, ENQUEUE, "1")
    argv = [sys.executable, "-m", "django", "tandem", "serve"]
    argv += ["--bind", f"127.0.0.1:{free_port()}", "-w", str(args.workers)]
    logfile = (directory / f"serve-{label}-{number}.log").open("wb")
    spawned = time.time()
    proc = subprocess.Popen(argv, env=env, cwd=BENCH, stdout=logfile, stderr=logfile)
    try:
        first = wait_marks(marks_file, 1, proc, 60)[0]
        quiet(proc.pid)
        time.sleep(1.0)
        started = tree_memory([proc.pid])
        in_django(env, ENQUEUE, str(args.burst))
        drained = sorted(wait_marks(marks_file, 1 + args.burst, proc, 120))[1:]
        time.sleep(args.idle)
        burst = tree_memory([proc.pid])
    finally:
        code = stop(proc, [signal.SIGTERM])
        logfile.close()
    if code:
        log((directory / f"serve-{label}-{number}.log").read_text()[-3000:])
        raise RuntimeError(f"serve exited with {code}")
    result = {
        "startup_s": first - spawned,
        "rss_start_mib": started["rss_mib"],
        "pss_start_mib": started["pss_mib"],
        "rss_burst_mib": burst["rss_mib"],
        "burst_s": drained[-1] - drained[0],  # first to last burst task done
        "pss_burst_mib": burst["pss_mib"],
    }
    log(
        f"  round {number} {executor:14} {src[-24:]}: start-up {result['startup_s']:.3f} s, "
        f"RSS idle {result['rss_start_mib']:.1f} MiB, "
        f"after the burst {result['rss_burst_mib']:.1f} MiB"
    )
    return result


DASH = "\N{EN DASH}"


def summary(values: Sequence[float], fmt: str) -> str:
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return f"{fmt.format(statistics.median(values))} ({low}{DASH}{high})"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--executors", nargs="+", default=["default", "thread"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="raw numbers on stderr")
    parser.add_argument(
        "--src",
        nargs="+",
        default=[""],
        help="tandem source trees to compare, interleaved (default: this checkout's src)",
    )
    args = parser.parse_args(argv)
    raw: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="tandem-startup-") as tmp:
        for number in range(1, args.rounds + 1):
            for executor in args.executors:  # interleaved: drift spreads over every executor
                for src in args.src:
                    name = f"{executor} {src}" if src else executor
                    raw.setdefault(name, []).append(
                        one_round(Path(tmp), executor, args, number, src)
                    )
    info = machine_info()
    load = os.getloadavg()
    print(
        f"tandem serve -w {args.workers}, SQLite; {args.rounds} rounds, median (min{DASH}max); "
        f"commit {info['commit']}, Python {info['python']}, {info['nproc']} CPUs, load average "
        f"{load[0]:.1f} at the end"
    )
    print(
        "| executor | start-up s | RSS idle MiB | PSS idle MiB | RSS after burst MiB "
        "| burst drain s (first to last done) |"
    )
    print("|---|---|---|---|---|---|")
    for executor, runs in raw.items():
        print(
            f"| {executor} | {summary([r['startup_s'] for r in runs], '{:.3f}')} | "
            f"{summary([r['rss_start_mib'] for r in runs], '{:.1f}')} | "
            f"{summary([r['pss_start_mib'] for r in runs], '{:.1f}')} | "
            f"{summary([r['rss_burst_mib'] for r in runs], '{:.1f}')} | "
            f"{summary([r['burst_s'] for r in runs], '{:.3f}')} |"
        )
    if args.json:
        log(json.dumps(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

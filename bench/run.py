#!/usr/bin/env python
"""tandem's benchmark harness: enqueue throughput, drain throughput and pickup latency.

    bench/run [--db sqlite postgres] [--tasks 2000] [--repeat 3] [--workers 4]
    .venv-3.14/bin/python bench/run.py …  (the same, with an explicit interpreter)

Every measurement runs in fresh processes against the minimal project in ``bench/benchsite``; this
process only orchestrates (it imports no Django), so it can switch stores between runs. See
``bench/README.md`` for what each number means. Results: a markdown table on stdout and in
``bench/results/latest.md``, raw numbers in ``bench/results/raw/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import cpu_seconds, log, machine_info, percentile, wait_until_quiet

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
DASH = "\N{EN DASH}"  # for "min-max" ranges in the table
PROTECTED_DATABASES = frozenset({"postgres", "template0", "template1", "test", "root"})


class Failure(RuntimeError):
    pass


# -- stores ------------------------------------------------------------------------------------


class Store:
    """One database the benchmark runs against; creates it on enter, removes it on exit."""

    def __init__(self, kind: str, executor: str | None, args: argparse.Namespace) -> None:
        self.kind = kind
        self.label = f"{kind}, {executor}" if executor else kind
        self.args = args
        self.env = os.environ.copy()
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p
        )
        self.env["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
        self.env["BENCH_DB"] = kind
        self.env.pop("BENCH_POLL_INTERVAL", None)
        self.env.pop("BENCH_SQLITE_SYNCHRONOUS", None)
        self.env.pop("BENCH_EXECUTOR", None)
        if executor:
            self.env["BENCH_EXECUTOR"] = executor
        if args.sqlite_synchronous:
            self.env["BENCH_SQLITE_SYNCHRONOUS"] = args.sqlite_synchronous
        if args.poll_interval:
            self.env["BENCH_POLL_INTERVAL"] = str(args.poll_interval)
        self.tmp = tempfile.TemporaryDirectory(prefix=f"tandem-bench-{kind}-")
        self.logs = Path(self.tmp.name)
        self.info: dict[str, Any] = {}

    def __enter__(self) -> Store:
        if self.kind == "sqlite":
            path = Path(self.tmp.name) / "bench.sqlite3"
            self.env["BENCH_SQLITE_PATH"] = str(path)
            self.info["filesystem"] = filesystem_type(path.parent)
        else:
            self.env["BENCH_PG_NAME"] = self.args.pg_name
            self._pg_admin(f'DROP DATABASE IF EXISTS "{self.args.pg_name}" WITH (FORCE)')
            self._pg_admin(f'CREATE DATABASE "{self.args.pg_name}"')
        self.info.update(self.ops("setup", timeout=120))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.kind == "postgres" and not self.args.keep_db:
                self._pg_admin(f'DROP DATABASE IF EXISTS "{self.args.pg_name}" WITH (FORCE)')
        finally:
            if self.args.keep_db:
                kept = self.args.pg_name if self.kind == "postgres" else self.tmp.name
                log(f"[{self.label}] kept: {kept}")
            else:
                self.tmp.cleanup()

    def _pg_admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=5432, user=self.args.pg_user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def ops(self, *args: str, timeout: float = 300) -> dict[str, Any]:
        """Run ``benchsite.ops`` in a fresh process; its JSON answer."""
        done = subprocess.run(
            [sys.executable, "-m", "benchsite.ops", *args],
            cwd=BENCH,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise Failure(
                f"benchsite.ops {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return answer

    def worker(self, *extra: str, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        logfile = self.logs / f"{name}.log"
        with logfile.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "django", "tandem", "worker", *extra],
                cwd=BENCH,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return proc, logfile


def filesystem_type(path: Path) -> str | None:
    for command in (["findmnt", "-n", "-o", "FSTYPE", "-T"], ["stat", "-f", "-c", "%T"]):
        try:
            return subprocess.run(
                [*command, str(path)], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
    return None


def reap(proc: subprocess.Popen[bytes], timeout: float, logfile: Path) -> tuple[int, float]:
    """Wait for ``proc`` with ``os.wait4``: its exit code and CPU seconds (user + sys)."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = logfile.read_text(errors="replace")[-3000:]
        raise Failure(f"worker exited with {code} (timeout {timeout:g}s?); its log ends:\n{tail}")
    return code, usage.ru_utime + usage.ru_stime


# -- phases ------------------------------------------------------------------------------------


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def phase_enqueue(store: Store, n: int) -> dict[str, Any]:
    store.ops("reset")
    result = store.ops("enqueue", "--count", str(n), timeout=600)
    ready = store.ops("collect")["statuses"].get("READY", 0)
    if ready != n:
        raise Failure(f"enqueued {n} tasks but {ready} are READY")
    return result


def phase_drain(store: Store, n: int, workers: int, rep: int) -> dict[str, Any]:
    store.ops("reset")
    store.ops("fill", "--count", str(n))
    start, started_epoch = time.perf_counter(), time.time()
    proc, logfile = store.worker("--burst", "-w", str(workers), name=f"drain-{rep}")
    _, cpu = reap(proc, 600, logfile)
    wall, exited_epoch = time.perf_counter() - start, time.time()
    collected = store.ops("collect")
    succeeded = collected["statuses"].get("SUCCESSFUL", 0)
    if succeeded != n:
        raise Failure(f"drain: {succeeded}/{n} SUCCESSFUL: {collected['statuses']}")
    span = collected["span_seconds"]
    return {
        "wall_seconds": wall,
        "span_seconds": span,
        "cpu_seconds": cpu,
        "wall_per_second": n / wall,
        "span_per_second": n / span if span else None,
        "overhead_seconds": wall - span if span is not None else None,
        # Same host clock as the worker's timestamps: where the overhead goes.
        "startup_seconds": epoch(collected["first_started_at"]) - started_epoch,
        "shutdown_seconds": exited_epoch - epoch(collected["last_finished_at"]),
        "cpu_ms_per_task": cpu * 1000 / n,
        "first_started_at": collected["first_started_at"],
        "last_finished_at": collected["last_finished_at"],
    }


def phase_latency(
    store: Store, n: int, interval: float, workers: int, rep: int, idle: float
) -> dict[str, Any]:
    store.ops("reset")
    proc, logfile = store.worker("-w", str(workers), name=f"latency-{rep}")
    try:
        store.ops("wait-worker", "--timeout", "60")
        idle_cpu = None
        if idle > 0:
            # A registered worker with nothing to do: what does waiting cost? Start-up goes on
            # after registration (pools, listener, Django in each interpreter): wait for it.
            wait_until_quiet(proc.pid)
            before, start = cpu_seconds(proc.pid), time.perf_counter()
            time.sleep(idle)
            idle_cpu = (cpu_seconds(proc.pid) - before) / (time.perf_counter() - start)
        enqueued = store.ops("enqueue", "--count", str(n), "--interval", str(interval))
        store.ops("wait-done", "--count", str(n), "--timeout", "120")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    stopped = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    _, cpu = reap(proc, 60, logfile)
    stop_seconds = time.perf_counter() - stopped
    collected = store.ops("collect")
    if collected["statuses"].get("SUCCESSFUL", 0) != n:
        raise Failure(f"latency: not all {n} SUCCESSFUL: {collected['statuses']}")
    pickups = collected["pickup_ms"]
    return {
        "p50_ms": percentile(pickups, 50),
        "p99_ms": percentile(pickups, 99),
        "max_ms": max(pickups),
        "pickup_ms": pickups,
        "idle_cpu_percent": idle_cpu * 100 if idle_cpu is not None else None,
        "enqueue_seconds": enqueued["seconds"],
        "sigterm_to_exit_seconds": stop_seconds,
        "worker_cpu_seconds": cpu,
    }


# -- reporting ---------------------------------------------------------------------------------

# (row label, phase, key in that phase's result, number format)
METRICS: list[tuple[str, str, str, str]] = [
    ("enqueue, one `.enqueue()` at a time (tasks/s)", "enqueue", "per_second", "{:,.0f}"),
    ("enqueue call p50 (ms)", "enqueue", "call_ms_p50", "{:.2f}"),
    ("drain, `worker --burst` start → exit (tasks/s)", "drain", "wall_per_second", "{:,.0f}"),
    ("drain, first started_at → last finished_at (tasks/s)", "drain", "span_per_second", "{:,.0f}"),
    ("drain: process start → first task started (s)", "drain", "startup_seconds", "{:.2f}"),
    ("drain: last task finished → process exit (s)", "drain", "shutdown_seconds", "{:.2f}"),
    ("worker CPU (user+sys) per task (ms)", "drain", "cpu_ms_per_task", "{:.2f}"),
    ("pickup latency p50 (ms)", "latency", "p50_ms", "{:.1f}"),
    ("pickup latency p99 (ms)", "latency", "p99_ms", "{:.1f}"),
    ("idle worker CPU (% of one core)", "latency", "idle_cpu_percent", "{:.1f}"),
    ("SIGTERM → idle worker exited (s)", "latency", "sigterm_to_exit_seconds", "{:.2f}"),
]


def summarize(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "—"
    median = fmt.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}{DASH}{fmt.format(max(values))})"


def render(meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    stores = list(results)
    lines = [
        "# tandem benchmark — latest results",
        "",
        f"- date: {meta['date']}",
        f"- machine: nproc {meta['machine']['nproc']}, {meta['machine']['cpu']}, "
        f"{meta['machine']['platform']}",
        f"- Python {meta['machine']['python']}, Django {meta['django']}, tandem "
        f"{meta['tandem']} at {meta['machine']['commit']}",
    ]
    for column in stores:
        info = results[column]["info"]
        if "error" in results[column]:
            lines.append(f"- {column}: FAILED ({results[column]['error'].splitlines()[0]})")
            continue
        if info["vendor"] == "sqlite":
            detail = (
                f"journal_mode={info.get('journal_mode')}, synchronous={info.get('synchronous')}, "
                f"file on {info.get('filesystem')}"
            )
        else:
            detail = f"loopback TCP, synchronous_commit={info.get('synchronous_commit')}"
        lines.append(
            f"- {column}: {info['store']}; {detail}; executor {info.get('executor', '?')}, "
            f"poll interval {info.get('poll_interval', '?')} s"
        )
    loads = [x for kind in stores for x in results[kind].get("load_averages", [])]
    if loads:
        lines.append(
            f"- 1-minute load average when phases started: {min(loads):.2f}{DASH}{max(loads):.2f} "
            f"on {meta['machine']['nproc']} CPUs (other work on the machine skews the numbers)"
        )
    p = meta["params"]
    lines += [
        f"- parameters: --tasks {p['tasks']} --repeat {p['repeat']} --workers {p['workers']}; "
        f"pickup: {p['latency_tasks']} tasks {p['latency_interval'] * 1000:g} ms apart",
        "- command: `" + meta["command"] + "`",
        "",
        f"Each cell: median of the repetitions (min{DASH}max).",
        "",
        "| metric | " + " | ".join(stores) + " |",
        "|---|" + "---:|" * len(stores),
    ]
    for label, phase, key, fmt in METRICS:
        cells = []
        for kind in stores:
            values = [r[key] for r in results[kind].get(phase, []) if r.get(key) is not None]
            cells.append(summarize(values, fmt))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Raw numbers (every repetition, every pickup): `bench/results/raw/` (not committed). "
        "What each row measures: `bench/README.md`.",
        "",
    ]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def write_results(
    table: str,
    meta: dict[str, Any],
    results: dict[str, Any],
    output: Path,
    started: dt.datetime,
    prefix: str = "",
) -> None:
    """Print ``table``, write it to ``output`` and the raw numbers to
    ``results/raw/<prefix><UTC timestamp>.json``."""
    print(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    raw_dir = RESULTS / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    raw = raw_dir / f"{prefix}{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    raw.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    shown = output.relative_to(REPO) if output.is_relative_to(REPO) else output
    log(f"wrote {shown} and {raw.relative_to(REPO)}")


def run_store(kind: str, executor: str | None, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"enqueue": [], "drain": [], "latency": []}
    loads: list[float] = out.setdefault("load_averages", [])
    n = args.tasks
    with Store(kind, executor, args) as store:
        out["info"] = {**store.info, "label": store.label}
        kind = store.label
        log(f"[{kind}] {store.info['store']}, executor {store.info.get('executor', '?')}")
        if args.warmup:
            # Unreported: a fresh database's first writes (file growth, catalog and buffer
            # caches) would otherwise land in repetition 1 only.
            warm = min(n, 500)
            log(f"[{kind}] warm-up: enqueue and drain {warm} tasks (not reported) …")
            phase_enqueue(store, warm)
            phase_drain(store, warm, args.workers, 0)
        for rep in range(1, args.repeat + 1):
            tag = f"[{kind} {rep}/{args.repeat}]"

            log(f"{tag} enqueue {n} one by one …")
            loads.append(os.getloadavg()[0])
            r = phase_enqueue(store, n)
            log(
                f"{tag}   {r['per_second']:,.0f} tasks/s ({r['seconds']:.2f} s, "
                f"call p50 {r['call_ms_p50']:.2f} ms, p99 {r['call_ms_p99']:.2f} ms)"
            )
            out["enqueue"].append(r)

            log(f"{tag} drain {n} with `tandem worker --burst -w {args.workers}` …")
            loads.append(os.getloadavg()[0])
            r = phase_drain(store, n, args.workers, rep)
            log(
                f"{tag}   {r['wall_per_second']:,.0f} tasks/s process ({r['wall_seconds']:.2f} s), "
                f"{r['span_per_second']:,.0f} tasks/s in the DB ({r['span_seconds']:.2f} s), "
                f"CPU {r['cpu_ms_per_task']:.2f} ms/task; start-up {r['startup_seconds']:.2f} s, "
                f"shutdown {r['shutdown_seconds']:.2f} s"
            )
            out["drain"].append(r)

            log(
                f"{tag} pickup latency: idle worker, {args.latency_tasks} tasks "
                f"{args.latency_interval * 1000:g} ms apart …"
            )
            loads.append(os.getloadavg()[0])
            r = phase_latency(
                store,
                args.latency_tasks,
                args.latency_interval,
                args.workers,
                rep,
                args.idle_seconds,
            )
            idle = r["idle_cpu_percent"]
            log(
                f"{tag}   p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                f"max {r['max_ms']:.1f} ms; idle CPU "
                f"{'-' if idle is None else f'{idle:.1f} %'}; "
                f"SIGTERM → exit {r['sigterm_to_exit_seconds']:.2f} s"
            )
            out["latency"].append(r)
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--workers", type=int, default=4, help="worker threads, -w (default 4)")
    parser.add_argument("--latency-tasks", type=int, default=100)
    parser.add_argument("--latency-interval", type=float, default=0.05, help="seconds between them")
    parser.add_argument(
        "--idle-seconds", type=float, default=3.0, help="idle-CPU window before the pickup run"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=None, help="override tandem's poll interval"
    )
    parser.add_argument(
        "--executor",
        nargs="+",
        choices=["thread", "subinterpreter", "process"],
        default=[None],
        help="pool executor(s), one column each (default: tandem's default executor)",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        choices=["OFF", "NORMAL", "FULL", "EXTRA"],
        default=None,
        help="SQLite's PRAGMA synchronous (default: SQLite's own, FULL)",
    )
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the unreported warm-up"
    )
    parser.add_argument("--pg-name", default="tandem_bench", help="database to create and drop")
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--keep-db", action="store_true", help="keep the databases afterwards")
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "latest.md", help="markdown results file"
    )
    args = parser.parse_args(argv)
    if args.pg_name.lower() in PROTECTED_DATABASES:
        parser.error(f"refusing to create and drop database {args.pg_name!r}")
    for name in ("tasks", "repeat", "workers", "latency_tasks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    results: dict[str, dict[str, Any]] = {}
    failed = False
    for kind in args.db:
        for executor in args.executor:
            label = f"{kind}, {executor}" if executor else kind
            try:
                results[label] = run_store(kind, executor, args)
            except Failure as exc:
                # Keep going: the other columns are still worth having.
                log(f"[{label}] FAILED: {exc}")
                results[label] = {"error": str(exc), "info": {"label": label}}
                failed = True
    infos = [r["info"] for r in results.values() if "store" in r["info"]]
    if not infos:
        return 1
    first = infos[0]
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "django": first["django"],
        "tandem": first["tandem"],
        "params": {
            "tasks": args.tasks,
            "repeat": args.repeat,
            "workers": args.workers,
            "latency_tasks": args.latency_tasks,
            "latency_interval": args.latency_interval,
            "poll_interval": args.poll_interval,
        },
        "command": "bench/run " + " ".join(argv) if argv else "bench/run",
    }
    write_results(render(meta, results), meta, results, args.output, started)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python
"""tandem against its peers: enqueue, drain, pickup, CPU and memory, side by side.

    bench/compare [--only KEY ...] [--slots 2] [--repeat 3] [--tasks 2000] [--quick] [--no-limits]

Run through ``bench/compare``, which keeps ``bench/.venv-compare`` (the peers, pinned in
``bench/requirements-compare.txt``). Every contender (``bench/contenders/``) runs the same task,
which appends one line to a marks file (``bench/contenders/marks.py``); this process only
orchestrates and reads that file. Phases per contender and repetition: enqueue (and bulk enqueue),
drain, pickup; once per run: the stores' own limits and gunicorn's memory. See ``bench/README.md``.

Results: ``bench/results/compare.md``, ``bench/results/compare.png``, raw numbers in
``bench/results/raw/compare-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
from common import log, machine_info, percentile
from contenders.base import (
    Contender,
    RunContext,
    pg_drop,
    pg_recreate,
    redis_flush,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"


DASH = "\N{EN DASH}"
REDIS_URL = "redis://127.0.0.1:6379/9"
PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
PGBENCH_DB = "tandem_cmp_pgbench"
MIB = 1024 * 1024
REDIS_BENCHMARK = ["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "--dbnum", "9", "-q"]


class Failure(RuntimeError):
    pass


# -- processes -----------------------------------------------------------------------------------


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + sys) of the tree under pid, reaped children included."""
    total = 0.0
    for proc in tree(pid):
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def tree_memory(pids: Sequence[int]) -> dict[str, Any]:
    rss = pss = 0
    count = 0
    pss_ok = True
    for pid in pids:
        for proc in tree(pid):
            try:
                info = proc.memory_full_info()
            except psutil.AccessDenied:
                info, pss_ok = proc.memory_info(), False
            except psutil.NoSuchProcess:
                continue
            count += 1
            rss += info.rss
            pss += getattr(info, "pss", 0)
    return {
        "rss_mib": rss / MIB,
        "pss_mib": pss / MIB if pss_ok else None,
        "processes": count,
    }


def wait_quiet(pid: int, window: float = 0.5, limit: float = 15.0) -> None:
    """Until the tree under pid uses < 5 % of a core over ``window`` (at most ``limit`` s)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = tree_cpu(pid)
        time.sleep(window)
        if tree_cpu(pid) - before < 0.05 * window:
            return


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, up to 15 s, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        log(f"    pid {proc.pid} ignored SIGTERM for 15 s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    # whatever is left of the group (a child that outlived its parent)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def log_tail(path: Path, lines: int = 4) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip()[:200] for line in text[-lines:])


def run_script(argv: list[str], env: dict[str, str], cwd: Path, name: str, timeout: float) -> dict:
    """Run an enqueue script; its last stdout line is JSON."""
    logfile = cwd / f"{name}.log"
    with open(logfile, "wb") as err:
        try:
            proc = subprocess.run(
                argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=err, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise Failure(f"{name} timed out after {timeout:g} s") from exc
    out = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode or not out:
        raise Failure(f"{name} exited {proc.returncode}: {log_tail(logfile)}")
    try:
        return json.loads(out[-1])
    except json.JSONDecodeError as exc:
        raise Failure(f"{name}: last stdout line is not JSON: {out[-1][:200]}") from exc


def read_marks(path: Path) -> list[tuple[float, float]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    marks = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            marks.append((float(parts[0]), float(parts[1])))
    return marks


def stamped_pickups(path: Path, start: int, stop: int) -> list[float]:
    """Pickup in ms (done - stamp) of the stamped marks among lines start..stop of the file (the
    marks are appended in completion order, so one pickup pass's tasks are one slice)."""
    return [(done - stamp) * 1000 for done, stamp in read_marks(path)[start:stop] if stamp > 0]


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_marks(
    path: Path,
    count: int,
    timeout: float,
    proc: subprocess.Popen[bytes],
    logfile: Path,
    on_first: Callable[[], None] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    seen_first = False
    while True:
        done = count_lines(path)
        if not seen_first and done > 0 and on_first is not None:
            on_first()
            seen_first = True
        if done >= count:
            return
        if proc.poll() is not None:
            raise Failure(f"worker exited {proc.returncode} at {done}/{count}: {log_tail(logfile)}")
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:g} s at {done}/{count} marks")
        time.sleep(0.01)


# -- one contender, one repetition ---------------------------------------------------------------


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, Failure) else f"{type(exc).__name__}: {exc}"


def fresh(contender: Contender, ctx: RunContext) -> None:
    redis_flush(ctx)
    ctx.marks.write_text("")
    contender.prepare(ctx)


def run_contender(
    contender: Contender, ctx: RunContext, args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {"rep": ctx.rep}
    n = args.tasks
    env = {**os.environ, **contender.env(ctx)}
    # bulk enqueue: a pass of its own (it must not leave 2n tasks for the drain)
    bulk_argv = contender.bulk_enqueue_argv(ctx, n)
    out["has_bulk"] = bulk_argv is not None
    if bulk_argv is not None:
        try:
            fresh(contender, ctx)
            try:
                res = run_script(bulk_argv, env, ctx.tmp, "bulk", timeout=300)
                out["bulk_tps"] = n / res["seconds"]
                log(f"    bulk enqueue: {out['bulk_tps']:.0f} tasks/s")
            finally:
                contender.cleanup(ctx)
        except Exception as exc:
            out["error"] = f"bulk enqueue: {describe(exc)}"
            log(f"    FAILED {out['error']}")
    phase = "prepare"
    try:
        fresh(contender, ctx)
        try:
            phase = "enqueue"
            res = run_script(contender.enqueue_argv(ctx, n), env, ctx.tmp, "enqueue", timeout=300)
            out["enqueue_tps"] = n / res["seconds"]
            out["enqueue_p50_ms"] = res["p50_ms"]
            log(f"    enqueue: {out['enqueue_tps']:.0f} tasks/s, p50 {res['p50_ms']:.2f} ms")
            phase = "drain"
            run_worker(contender, ctx, args, out)
        finally:
            contender.cleanup(ctx)
    except Exception as exc:
        error = f"{out.get('phase', phase)}: {describe(exc)}"
        out["error"] = f"{out['error']}; {error}" if out.get("error") else error
        log(f"    FAILED {error}")
    return out


def run_worker(
    contender: Contender,
    ctx: RunContext,
    args: argparse.Namespace,
    out: dict[str, Any],
) -> None:
    n = args.tasks
    argv = contender.worker_argv(ctx)
    env = {**os.environ, **contender.env(ctx)}  # worker_argv may have set e.g. a port
    logfile = ctx.tmp / "worker.log"
    ctx.marks.write_text("")
    cpu: list[float] = []
    with open(logfile, "wb") as worker_log:
        spawned = time.time()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ctx.tmp,
            stdin=subprocess.DEVNULL,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_marks(
            ctx.marks,
            n,
            args.drain_timeout,
            proc,
            logfile,
            on_first=lambda: cpu.append(tree_cpu(proc.pid)),
        )
        cpu.append(tree_cpu(proc.pid))
        memory = tree_memory([proc.pid])
        marks = read_marks(ctx.marks)[:n]
        first, last = min(m[0] for m in marks), max(m[0] for m in marks)
        out["startup_s"] = first - spawned
        out["drain_tps"] = n / (last - first) if last > first else None
        out["cpu_ms_per_task"] = (cpu[-1] - cpu[0]) / n * 1000
        out["rss_mib"] = memory["rss_mib"]
        out["pss_mib"] = memory["pss_mib"]
        out["processes"] = memory["processes"]
        drain = f"{out['drain_tps']:.0f}" if out["drain_tps"] else "?"
        log(
            f"    drain: {drain} tasks/s, start-up {out['startup_s']:.2f} s, "
            f"CPU {out['cpu_ms_per_task']:.2f} ms/task, RSS {memory['rss_mib']:.0f} MiB "
            f"in {memory['processes']} processes"
        )

        # pickup: the same worker, idle
        out["phase"] = "pickup"
        wait_quiet(proc.pid)
        time.sleep(1.0)
        k = args.latency_tasks
        pickup_argv = contender.pickup_argv(ctx, k, args.latency_interval)
        timeout = 60 + k * args.latency_interval
        run_script(pickup_argv, env, ctx.tmp, "pickup", timeout=timeout)
        wait_marks(ctx.marks, n + k, 60, proc, logfile)
        pickups = stamped_pickups(ctx.marks, n, n + k)
        out["pickup_p50_ms"] = percentile(pickups, 50)
        out["pickup_p99_ms"] = percentile(pickups, 99)
        log(f"    pickup: p50 {out['pickup_p50_ms']:.1f} ms, p99 {out['pickup_p99_ms']:.1f} ms")

        # pickup from a view inside the worker's process (tandem serve), the same worker, idle
        view_argv = contender.view_pickup_argv(ctx, k, args.latency_interval)
        if view_argv is not None:
            out["phase"] = "pickup from a view"
            wait_quiet(proc.pid)
            time.sleep(1.0)
            run_script(view_argv, env, ctx.tmp, "pickup-view", timeout=timeout)
            wait_marks(ctx.marks, n + 2 * k, 60, proc, logfile)
            pickups = stamped_pickups(ctx.marks, n + k, n + 2 * k)
            out["pickup_view_p50_ms"] = percentile(pickups, 50)
            out["pickup_view_p99_ms"] = percentile(pickups, 99)
            log(
                f"    pickup from a view in serve: p50 {out['pickup_view_p50_ms']:.1f} ms, "
                f"p99 {out['pickup_view_p99_ms']:.1f} ms"
            )
        del out["phase"]
    finally:
        stop(proc)


# -- once per run: the stores' limits, gunicorn ---------------------------------------------------


def sqlite_commits(directory: Path, synchronous: str, seconds: float = 3.0) -> float:
    path = directory / f"limit-{synchronous}.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (v) VALUES ('x')")
            conn.execute("COMMIT")
            count += 1
        return count / (time.perf_counter() - start)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def store_limits(workroot: Path, admin_ctx: RunContext) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for sync in ("FULL", "NORMAL"):
        log(f"  store limits: SQLite commits/s, WAL, synchronous={sync} (3 s)")
        limits[f"sqlite_{sync.lower()}_commits_s"] = sqlite_commits(workroot, sync)
    if shutil.which("pgbench"):
        pg = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
        try:
            pg_recreate(admin_ctx, PGBENCH_DB)
            log("  store limits: pgbench -i -s 1, then -c 2 -j 2 -T 10 -n, and -S -T 5")
            subprocess.run(
                ["pgbench", *pg, "-i", "-s", "1", "-q", PGBENCH_DB],
                check=True,
                capture_output=True,
                timeout=120,
            )
            for key, extra in (
                ("pgbench_tpcb_tps", ["-T", "10"]),
                ("pgbench_select_tps", ["-S", "-T", "5"]),
            ):
                res = subprocess.run(
                    ["pgbench", *pg, "-c", "2", "-j", "2", "-n", *extra, PGBENCH_DB],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                found = re.search(r"tps = ([\d.]+)", res.stdout)
                limits[key] = float(found.group(1)) if found else None
        except (subprocess.SubprocessError, OSError) as exc:
            limits["pgbench_error"] = str(exc)
        finally:
            pg_drop(admin_ctx, PGBENCH_DB)
    if shutil.which("redis-benchmark"):
        log("  store limits: redis-benchmark -q -n 100000 -t set,lpush,rpop (database 9)")
        try:
            res = subprocess.run(
                [*REDIS_BENCHMARK, "-n", "100000", "-t", "set,lpush,rpop"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            for line in res.stdout.replace("\r", "\n").splitlines():
                found = re.match(r"^(SET|LPUSH|RPOP): ([\d.]+) requests per second", line.strip())
                if found:
                    limits[f"redis_{found.group(1).lower()}_rps"] = float(found.group(2))
        except (subprocess.SubprocessError, OSError) as exc:
            limits["redis_error"] = str(exc)
        finally:
            redis_flush(admin_ctx)
    return limits


def http_get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def gunicorn_memory(workroot: Path, python: str) -> dict[str, Any]:
    """gunicorn -w 2 (sync) serving bench/benchsite on SQLite, after 50 requests."""
    from contenders.tandem_ import free_port

    tmp = workroot / "gunicorn"
    tmp.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(BENCH),
        "DJANGO_SETTINGS_MODULE": "benchsite.settings",
        "BENCH_DB": "sqlite",
        "BENCH_SQLITE_PATH": str(tmp / "web.sqlite3"),
    }
    subprocess.run(
        [python, "-m", "django", "migrate", "--no-input", "-v", "0"],
        env=env,
        cwd=tmp,
        check=True,
        capture_output=True,
        timeout=120,
    )
    logfile = tmp / "gunicorn.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [python, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "benchsite.wsgi"],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise Failure(f"gunicorn exited {proc.returncode}: {log_tail(logfile)}")
            try:
                if http_get(port, "/ping/") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Failure("gunicorn did not answer within 60 s")
            time.sleep(0.1)
        for _ in range(50):
            http_get(port, "/ping/")
        wait_quiet(proc.pid)
        return tree_memory([proc.pid])
    finally:
        stop(proc)


# -- report --------------------------------------------------------------------------------------

COLUMNS: list[tuple[str, str, str]] = [
    # (result key, header, format)
    ("enqueue_tps", "enqueue tasks/s", "{:.0f}"),
    ("enqueue_p50_ms", "enqueue p50 ms", "{:.2f}"),
    ("bulk_tps", "bulk enqueue tasks/s", "{:.0f}"),
    ("drain_tps", "drain tasks/s", "{:.0f}"),
    ("startup_s", "start-up s", "{:.2f}"),
    ("pickup_p50_ms", "pickup p50 ms", "{:.1f}"),
    ("pickup_p99_ms", "pickup p99 ms", "{:.1f}"),
    ("pickup_view_p50_ms", "pickup from a view in serve p50 ms", "{:.1f}"),
    ("pickup_view_p99_ms", "pickup from a view in serve p99 ms", "{:.1f}"),
    ("cpu_ms_per_task", "CPU ms/task", "{:.2f}"),
    ("rss_mib", "worker RSS MiB", "{:.0f}"),
    ("pss_mib", "worker PSS MiB", "{:.0f}"),
    ("processes", "processes", "{:.0f}"),
    ("web_rss_mib", "+ gunicorn -w 2: RSS MiB", "{:.0f}"),
]


def summary(values: Sequence[float], fmt: str) -> str:
    if not values:
        return ""
    median = fmt.format(statistics.median(values))
    if len(values) == 1 or fmt.format(min(values)) == fmt.format(max(values)):
        return median
    return f"{median} ({fmt.format(min(values))}{DASH}{fmt.format(max(values))})"


def values(reps: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in reps if r.get(key) is not None]


def add_web_rss(raw: dict[str, Any]) -> None:
    web = raw.get("gunicorn") or {}
    for key, reps in raw["contenders"].items():
        for rep in reps:
            if rep.get("rss_mib") is None:
                continue
            if key.startswith("tandem-serve"):
                rep["web_rss_mib"] = rep["rss_mib"]  # web and workers in one process
            elif web.get("rss_mib") is not None:
                rep["web_rss_mib"] = rep["rss_mib"] + web["rss_mib"]


def render(raw: dict[str, Any], all_contenders: dict[str, Contender]) -> str:
    meta = raw["meta"]
    machine = meta["machine"]
    lines = [
        "# tandem against its peers — latest results",
        "",
        f"- date: {meta['date']}",
        f"- machine: nproc {machine['nproc']}, {machine['cpu']}, {machine['platform']}",
        f"- Python {machine['python']}, tandem at {machine['commit']}",
        f"- every contender with {meta.get('slots', '?')} worker slots (`--slots`: tandem "
        f"`-w`, huey `-w`, Celery `-c`, ...; see Contenders)",
        f"- {meta['tasks']} tasks per contender; pickup: {meta['latency_tasks']} tasks "
        f"{meta['latency_interval'] * 1000:g} ms apart; {meta['repeat']} repetition(s), "
        f"contenders interleaved; median (min{DASH}max)",
        f"- load average during the run: {summary(meta['loads'], '{:.2f}')}",
        f"- command: `bench/compare {' '.join(meta['argv'])}` (see `bench/README.md`)",
        "",
        "| contender | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    failures: list[str] = []
    for key, reps in raw["contenders"].items():
        contender = all_contenders[key]
        errors = [f"rep {r['rep'] + 1}: {r['error']}" for r in reps if r.get("error")]
        failures += [f"- `{key}` FAILED, {e}" for e in errors]
        cells = []
        for name, _, fmt in COLUMNS:
            got = values(reps, name)
            cell = summary(got, fmt)
            if name == "bulk_tps" and not any(r.get("has_bulk", True) for r in reps):
                cells.append("n/a")
                continue
            if name.startswith("pickup_view") and not contender.has_view_pickup:
                cells.append("n/a")
                continue
            if errors and len(got) < len(reps):
                cell = (cell + " " if cell else "") + "FAILED"
            cells.append(cell or "—")
        lines.append(f"| {contender.label} (`{key}`) | " + " | ".join(cells) + " |")
    if failures:
        lines += ["", "Failures:", "", *failures]
    lines += ["", "## Contenders", "", "| key | versions | set-up |", "|---|---|---|"]
    for key in raw["contenders"]:
        contender = all_contenders[key]
        versions = ", ".join(f"{k} {v}" for k, v in raw["versions"].get(key, {}).items())
        lines.append(f"| `{key}` | {versions} | {contender.describe(meta.get('slots', 2))} |")
    web = raw.get("gunicorn")
    lines += ["", "## Web process and store limits", ""]
    if web and "rss_mib" in web:
        pss = f", PSS {web['pss_mib']:.0f} MiB" if web.get("pss_mib") is not None else ""
        lines.append(
            f"- gunicorn -w 2 (sync) serving `bench/benchsite` after 50 requests: "
            f"RSS {web['rss_mib']:.0f} MiB{pss} in {web['processes']} processes; the "
            "'+ gunicorn' column adds it to each worker's RSS (`tandem serve` is web and "
            "workers in one process: its own RSS)"
        )
    elif web:
        lines.append(f"- gunicorn: FAILED, {web.get('error')}")
    limits = raw.get("limits") or {}
    names = {
        "sqlite_full_commits_s": "SQLite one-row INSERT+COMMIT/s, WAL, synchronous=FULL",
        "sqlite_normal_commits_s": "SQLite one-row INSERT+COMMIT/s, WAL, synchronous=NORMAL",
        "pgbench_tpcb_tps": "pgbench -c 2 -j 2 -T 10 -n (TPC-B-like, scale 1) tps",
        "pgbench_select_tps": "pgbench -S -c 2 -j 2 -T 5 -n (select only) tps",
        "redis_set_rps": "redis-benchmark SET requests/s",
        "redis_lpush_rps": "redis-benchmark LPUSH requests/s",
        "redis_rpop_rps": "redis-benchmark RPOP requests/s",
    }
    if limits:
        lines += ["", "| store limit | value |", "|---|---:|"]
        for key, label in names.items():
            if limits.get(key) is not None:
                lines.append(f"| {label} | {limits[key]:,.0f} |")
        for key in ("pgbench_error", "redis_error"):
            if limits.get(key):
                lines.append(f"| {key} | {limits[key]} |")
    lines += [
        "",
        "## How to read it",
        "",
        "- enqueue: a fresh process enqueues the tasks one call at a time (each its own commit or "
        "round trip), worker stopped; tasks/s and the median call. Bulk: the peer's native bulk "
        "API in one call (n/a: none), a separate pass.",
        "- drain: the worker starts on the enqueued tasks; tasks/s between the first and the last "
        "completion; start-up = spawn to first completion; CPU = user+sys of the worker's whole "
        "process tree between the first and last completion, per task.",
        "- pickup: the idle worker; tasks enqueued one by one by another process, completion "
        "time minus the time just before the enqueue call. Pickup from a view in serve "
        "(`tandem serve` only, n/a elsewhere): then the same idle server gets the tasks through "
        "HTTP GET /enqueue/, whose view takes the time just before its `enqueue()` (the HTTP "
        "request itself is not counted).",
        "- memory: RSS (and PSS) summed over the worker's process tree right after the drain; "
        "the store server (PostgreSQL, Redis) is not counted, nor in 'processes'.",
        "- every task appends one line to a shared file (no result kept by the harness); numbers "
        "on a shared 2-core machine move by 10-20 % between runs.",
        "",
    ]
    return "\n".join(lines)


def chart(raw: dict[str, Any], all_contenders: dict[str, Contender], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("enqueue_tps", "enqueue tasks/s (higher is better)"),
        ("drain_tps", "drain tasks/s (higher is better)"),
        ("pickup_p50_ms", "pickup p50 ms, log scale (lower is better)"),
        ("web_rss_mib", "web + worker RSS MiB (lower is better)"),
    ]
    keys = list(raw["contenders"])
    fig, axes = plt.subplots(1, len(panels), figsize=(18, 0.45 * len(keys) + 2), sharey=True)
    for ax, (name, title) in zip(axes, panels, strict=True):
        medians, lows, highs = [], [], []
        for key in keys:
            got = values(raw["contenders"][key], name)
            m = statistics.median(got) if got else 0.0
            medians.append(m)
            lows.append(m - min(got) if got else 0.0)
            highs.append(max(got) - m if got else 0.0)
        colors = ["tab:orange" if k.startswith("tandem") else "tab:blue" for k in keys]
        ax.barh(range(len(keys)), medians, xerr=[lows, highs], color=colors, capsize=3)
        if name == "pickup_p50_ms" and any(medians):
            ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(keys)))
    axes[0].set_yticklabels(keys)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"tandem vs peers: {raw['meta']['tasks']} tasks, {raw['meta']['slots']} worker slots, "
        f"{raw['meta']['repeat']} rep(s), "
        f"median and min-max ({raw['meta']['date']})",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="KEY", help="Run only these contenders.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument(
        "--slots",
        type=int,
        default=2,
        help="Worker slots for every contender: tandem -w, huey -w, Celery -c, RQ workers, ... "
        "(default: %(default)s).",
    )
    parser.add_argument("--latency-tasks", type=int, default=100)
    parser.add_argument("--latency-interval", type=float, default=0.05)
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--quick", action="store_true", help="1 repetition of 500 tasks.")
    parser.add_argument("--no-limits", action="store_true", help="Skip the store limits.")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "compare.md",
        help="The markdown table; the chart goes beside it as .png (default: %(default)s).",
    )
    parser.add_argument("--list", action="store_true", help="List the contenders and exit.")
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=3600.0,
        help="Seconds to wait for another bench/compare run to finish (default: %(default)s).",
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the scratch dir (logs, marks files)."
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.tasks = 1, 500
    return args


def take_lock(limit: float) -> Any:
    """One bench/compare at a time on this machine: they share Redis db 9 and the CPUs."""
    handle = open(RESULTS / ".compare.lock", "w")  # noqa: SIM115 (held until exit)
    deadline = time.monotonic() + limit
    said = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SystemExit(f"another bench/compare still runs after {limit:g} s") from None
            if not said:
                log("waiting for another bench/compare run to finish ...")
                said = True
            time.sleep(1)


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)  # clean up (databases, workers) as on Ctrl-C
    from contenders import ALL

    if args.list:
        for key, contender in ALL.items():
            print(f"{key:26} {contender.describe(args.slots)}")
        return 0
    keys = args.only or list(ALL)
    unknown = [k for k in keys if k not in ALL]
    if unknown:
        log(f"unknown contender(s) {', '.join(unknown)}; known: {', '.join(ALL)}")
        return 2
    # As deployed (pip writes byte code): an environment that forbids writing it (some CI
    # images set PYTHONDONTWRITEBYTECODE) would make every run of a contender's scripts compile
    # the modules it imports lazily, inside the timed calls (a first enqueue, a first claim).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    RESULTS.mkdir(exist_ok=True)
    lock = take_lock(args.lock_timeout)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(),
            "argv": list(argv),
            "tasks": args.tasks,
            "repeat": args.repeat,
            "slots": args.slots,
            "latency_tasks": args.latency_tasks,
            "latency_interval": args.latency_interval,
            "loads": [],
        },
        "versions": {k: ALL[k].versions() for k in keys},
        "contenders": {k: [] for k in keys},
    }
    workroot = Path(tempfile.mkdtemp(prefix="tandem-compare-"))

    def context(tmp: Path, rep: int) -> RunContext:
        return RunContext(
            tmp=tmp,
            marks=tmp / "marks.txt",
            python=sys.executable,
            bench=BENCH,
            repo=REPO,
            redis_url=REDIS_URL,
            pg_dsn_admin=PG_ADMIN,
            rep=rep,
            slots=args.slots,
        )

    admin_ctx = context(workroot, 0)
    log(
        f"bench/compare: {', '.join(keys)}; {args.repeat} rep(s) of {args.tasks} tasks, "
        f"{args.slots} worker slots each"
    )
    log(f"  scratch dir {workroot}")
    try:
        if not args.no_limits:
            try:
                raw["limits"] = store_limits(workroot, admin_ctx)
            except Exception as exc:
                raw["limits"] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"  store limits FAILED: {exc}")
        log("  gunicorn -w 2 memory")
        try:
            raw["gunicorn"] = gunicorn_memory(workroot, sys.executable)
            log(f"    RSS {raw['gunicorn']['rss_mib']:.0f} MiB")
        except Exception as exc:
            raw["gunicorn"] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"    FAILED: {exc}")
        for rep in range(args.repeat):
            for key in keys:
                contender = ALL[key]
                tmp = workroot / f"{key}-{rep}"
                tmp.mkdir()
                ctx = context(tmp, rep)
                log(f"  [rep {rep + 1}/{args.repeat}] {key}")
                raw["meta"]["loads"].append(os.getloadavg()[0])
                raw["contenders"][key].append(run_contender(contender, ctx, args))
    finally:
        try:
            redis_flush(admin_ctx)
        except Exception as exc:
            log(f"  could not FLUSHDB redis db 9: {exc}")
        if args.keep:
            log(f"  kept {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)

    add_web_rss(raw)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "raw").mkdir(exist_ok=True)
    (RESULTS / "raw" / f"compare-{stamp}.json").write_text(json.dumps(raw, indent=2) + "\n")
    report = render(raw, ALL)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    try:
        chart(raw, ALL, args.output.with_suffix(".png"))
    except Exception as exc:
        log(f"chart FAILED: {exc}")
    print(report)
    log(f"written: {args.output} (and .png), {RESULTS / 'raw' / f'compare-{stamp}.json'}")
    failed = any(r.get("error") for reps in raw["contenders"].values() for r in reps)
    lock.close()
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        log("bench/compare: interrupted (databases, Redis db 9, workers and scratch dir cleaned)")
        sys.exit(130)

#!/usr/bin/env python
"""``tandem serve`` measured: HTTP arrangements, CPU-bound speed-up per executor, memory.

    .venv-3.14/bin/python bench/serve.py [--rounds 3] [--phases http cpu rss]

Three phases, each against the minimal project in ``bench/benchsite`` on a fresh SQLite file (WAL):

1. **http** — ``tandem serve`` with each HTTP arrangement: ``threads`` (the WSGI server in threads
   of the main interpreter) and ``interpreters`` (``--web-interpreters 2``: two subinterpreters,
   each with Django and a server, accepting on one socket). The load client is a separate process
   (``bench/serve.py client``): ``--requests`` GETs of ``/ping/`` (one ORM query) one after another,
   then the same number spread over ``--concurrency`` connections. Each arrangement is measured
   idle; as a control, while two spinning processes *outside* the server load both cores in the
   scheduling class task workers use (``SCHED_IDLE``); and busy: while two CPU-bound tasks spin
   in the task pool (``-w 2``, subinterpreter executor). For reference, ``threads`` also runs
   with the *thread* executor (tasks and web share one GIL). Reported: requests/s, p50 and p99
   latency, and the server's CPU use meanwhile.
2. **cpu** — tandem's own pools on CPU-bound work: ``--cpu-tasks`` tasks counting primes (about
   0.5 s each), drained by an in-process ``Supervisor`` with 2 workers of each executor, after a
   warm-up that starts every worker; against the same tasks called one after another (serial).
3. **rss** — memory of the two ways to deploy web + 4 workers: ``tandem serve -w 4`` (the default
   executor) versus gunicorn with 2 sync workers plus a separate ``tandem worker -w 4``, after a
   warm-up of requests and tasks; the sum of VmRSS (and of PSS, which counts shared pages once)
   over every process of each deployment, children included.

Rounds interleave the variants, so drift on the machine spreads over all of them; the tables show
medians (and the range). Results go to ``bench/results/serve.md``, raw numbers to
``bench/results/raw/serve-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
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

from common import (
    cpu_seconds,
    free_port,
    get,
    log,
    machine_info,
    percentile,
    stop,
    tree_memory,
    wait_serving,
    wait_until_quiet,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"

DASH = "\N{EN DASH}"
PRIMES_BELOW = 420_000  # ~0.5 s of pure Python per task on the reference machine
PG_NAME = "tandem_bench_serve"


# -- the load client (runs in its own process) --------------------------------------------------


def client(port: int, requests: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """``requests`` GETs over ``concurrency`` connections, or as many as fit in ``seconds``."""
    for _ in range(20):  # warm-up: connections, Django's first-request costs
        get(port, "/ping/")
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_thread = [
        requests // concurrency + (i < requests % concurrency) for i in range(concurrency)
    ]

    def load(count: int) -> None:
        mine: list[float] = []
        for _ in range(count):
            before = time.perf_counter()
            if before > stop_at:
                break
            try:
                status, _ = get(port, "/ping/")
            except OSError as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            mine.append((time.perf_counter() - before) * 1000)
            if status != 200:
                with lock:
                    errors.append(f"HTTP {status}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=load, args=(count,)) for count in per_thread]
    start = time.perf_counter()
    stop_at = start + seconds
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "concurrency": concurrency,
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


# -- helpers for the orchestrator ---------------------------------------------------------------


class Site:
    """The bench site on one store (a SQLite file, or a PostgreSQL database made for the run);
    runs Django processes against it."""

    def __init__(self, directory: Path, db: str = "sqlite", pg_name: str = PG_NAME) -> None:
        self.directory = directory
        self.db = db
        self.path = directory / "serve.sqlite3"
        self.pg_name = pg_name

    def __enter__(self) -> Site:
        if self.db == "postgres":
            self._pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            self._pg_admin(f'CREATE DATABASE "{self.pg_name}"')
        self.info = self.ops("setup")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.db == "postgres":
            self._pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    @staticmethod
    def _pg_admin(sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())

    def env(self, executor: str | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
        env.update(
            DJANGO_SETTINGS_MODULE="benchsite.settings",
            PYTHONPATH=os.pathsep.join([str(BENCH), str(REPO / "src")]),
            PYTHONUNBUFFERED="1",
            BENCH_DB=self.db,
            BENCH_SQLITE_PATH=str(self.path),
            BENCH_SQLITE_SYNCHRONOUS="NORMAL",
            BENCH_PG_NAME=self.pg_name,
        )
        if executor:
            env["BENCH_EXECUTOR"] = executor
        env.update(extra)
        return env

    def ops(self, *args: str, timeout: float = 120) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "benchsite.ops", *args],
            env=self.env(),
            cwd=BENCH,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode:
            raise RuntimeError(f"benchsite.ops {' '.join(args)} failed:\n{out.stderr[-3000:]}")
        return dict(json.loads(out.stdout))

    def django(self, code: str, timeout: float = 120) -> str:
        out = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup()\n{code}"],
            env=self.env(),
            cwd=BENCH,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode:
            raise RuntimeError(f"python -c failed:\n{out.stderr[-3000:]}")
        return out.stdout

    def spawn(self, argv: Sequence[str], name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        logfile = (self.directory / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, *argv], env=env, cwd=BENCH, stdout=logfile, stderr=logfile
        )

    def log_tail(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")[-3000:]


def ready_count(port: int) -> int:
    return int(json.loads(get(port, "/ping/")[1])["ready"])


def run_client(port: int, requests: int, concurrency: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "client",
            str(port),
            str(requests),
            str(concurrency),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return dict(json.loads(out.stdout))


# -- phase 1: HTTP arrangements -----------------------------------------------------------------

ARRANGEMENTS = {
    # name: (extra serve arguments, task executor)
    "threads": ((), "subinterpreter"),
    "interpreters": (("--web-interpreters", "2"), "subinterpreter"),
    "threads, thread pool": ((), "thread"),
}


#: The control: CPU load from outside the server, in the scheduling class task workers use.
SPINNER = (
    "import os\n"
    "try: os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
    "except (AttributeError, OSError): os.nice(19)\n"
    "while True: pass\n"
)

STORES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def phase_http(site: Site, name: str, args: argparse.Namespace, rnd: int) -> dict[str, Any]:
    extra, executor = ARRANGEMENTS[name]
    port = free_port()
    label = f"http-{site.db}-{name.replace(', ', '-').replace(' ', '-')}-{rnd}"
    argv = ["-m", "django", "tandem", "serve", "--bind", f"127.0.0.1:{port}", "--grace", "5"]
    proc = site.spawn([*argv, "-w", "2", *extra], label, site.env(executor))
    result: dict[str, Any] = {}
    try:
        wait_serving(port, proc)
        wait_until_quiet(proc.pid)
        spinners: list[subprocess.Popen[bytes]] = []
        for state in ("idle", "control", "busy"):
            if state == "control":
                spinners = [subprocess.Popen([sys.executable, "-c", SPINNER]) for _ in range(2)]
                time.sleep(0.5)
            if state == "busy":
                for spinner in spinners:
                    spinner.kill()
                    spinner.wait()
                spinners = []
                site.django(
                    "from benchsite.tasks import spin\n"
                    f"for _ in range(2): spin.enqueue({args.spin_seconds})"
                )
                deadline = time.monotonic() + 30
                while ready_count(port) and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)  # both tasks spinning
            for concurrency in (1, args.concurrency):
                cpu_before, wall_before = cpu_seconds(proc.pid), time.perf_counter()
                numbers = run_client(port, args.requests, concurrency, args.client_seconds)
                numbers["server_cpu_percent"] = (
                    100 * (cpu_seconds(proc.pid) - cpu_before) / (time.perf_counter() - wall_before)
                )
                result[f"{state}-c{concurrency}"] = numbers
                log(
                    f"  round {rnd} {site.db:8} {name:22} {state} c={concurrency}: "
                    f"{numbers['per_second']:7.0f} req/s  p50 {numbers['p50_ms']:6.2f} ms  "
                    f"p99 {numbers['p99_ms']:7.2f} ms  server CPU "
                    f"{numbers['server_cpu_percent']:4.0f}%  errors {numbers['errors']}"
                )
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        # Two signals: the spinning tasks are released at once.
        result["exit_code"] = stop(proc, [signal.SIGTERM, signal.SIGTERM])
        if result["exit_code"] != 0:
            log(f"  {name}: serve exited with {result['exit_code']}\n{site.log_tail(label)}")
    site.ops("reset")
    return result


# -- phase 2: CPU-bound speed-up per executor ---------------------------------------------------

CPU_SCRIPT = r"""
import json, sys, threading, time
import django
django.setup()
from benchsite.tasks import count_primes, sleep
from tandem.models import TaskRecord

executor, tasks, below, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if executor == "serial":
    start = time.perf_counter()
    for _ in range(tasks):
        count_primes.call(below)
    print(json.dumps({"seconds": time.perf_counter() - start}))
    sys.exit(0)

from tandem.worker.supervisor import Supervisor

supervisor = Supervisor(workers=workers, listen=False)
runner = threading.Thread(target=supervisor.run)
runner.start()

def wait_settled(count, limit=300):
    deadline = time.monotonic() + limit
    while supervisor.settled < count:
        if time.monotonic() > deadline or not runner.is_alive():
            raise SystemExit(f"only {supervisor.settled}/{count} settled")
        time.sleep(0.002)

for _ in range(workers):  # warm-up: every worker starts (and sets Django up) before the clock
    sleep.enqueue(1.0)
wait_settled(workers)
start = time.perf_counter()
for _ in range(tasks):
    count_primes.enqueue(below)
wait_settled(workers + tasks)
seconds = time.perf_counter() - start
supervisor.request_stop()
runner.join()
statuses = sorted(set(TaskRecord.objects.values_list("status", flat=True)))
print(json.dumps({"seconds": seconds, "statuses": statuses}))
"""


def phase_cpu(site: Site, executor: str, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CPU_SCRIPT,
            executor,
            str(args.cpu_tasks),
            str(args.primes_below),
            "2",
        ],
        env=site.env(None if executor == "serial" else executor),
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode:
        raise RuntimeError(f"cpu {executor} failed:\n{out.stderr[-3000:]}")
    site.ops("reset")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- phase 3: memory of two deployments ---------------------------------------------------------

DEPLOYMENTS = (
    "tandem serve",
    "tandem serve --web-interpreters 2",
    "gunicorn -w 2 + tandem worker",
)


def warm_up(site: Site, port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(50):
        get(port, "/ping/")
    site.django(
        "from benchsite.tasks import count_primes\nfor _ in range(8): count_primes.enqueue(100_000)"
    )
    site.ops("wait-done", "--count", "8", "--timeout", "120")
    time.sleep(1.0)
    wait_until_quiet(proc.pid)


def phase_rss(site: Site, deployment: str, rnd: int) -> dict[str, Any]:
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if deployment.startswith("tandem serve"):
            argv = ["-m", "django", "tandem", "serve", "--bind", f"127.0.0.1:{port}", "-w", "4"]
            if "web-interpreters" in deployment:
                argv += ["--web-interpreters", "2"]
            procs.append(site.spawn(argv, f"rss-serve-{rnd}", site.env()))
        else:
            gunicorn = ["-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "benchsite.wsgi"]
            procs.append(site.spawn(gunicorn, f"rss-gunicorn-{rnd}", site.env()))
            worker = ["-m", "django", "tandem", "worker", "-w", "4"]
            procs.append(site.spawn(worker, f"rss-worker-{rnd}", site.env()))
        wait_serving(port, procs[0])
        time.sleep(1.0)
        for proc in procs:
            wait_until_quiet(proc.pid)
        warm_up(site, port, procs[-1])
        memory = tree_memory([p.pid for p in procs])
        log(
            f"  round {rnd} {deployment:28}: RSS {memory['rss_mib']:6.1f} MiB, "
            f"PSS {memory['pss_mib']:6.1f} MiB in {memory['processes']} processes "
            f"{memory['per_process_rss_mib']}"
        )
        return memory
    finally:
        for proc in procs:
            stop(proc, [signal.SIGTERM])
        site.ops("reset")


# -- report ------------------------------------------------------------------------------------


def summary(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "—"
    median = fmt.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}{DASH}{fmt.format(max(values))})"


def render(meta: dict[str, Any], raw: dict[str, Any], args: argparse.Namespace) -> str:
    machine = meta["machine"]
    lines = [
        "# `tandem serve` — latest results",
        "",
        f"- date: {meta['date']}",
        f"- machine: nproc {machine['nproc']}, {machine['cpu']}, {machine['platform']}",
        f"- Python {machine['python']}, Django {meta['django']}, tandem at {machine['commit']}",
        f"- stores: {'; '.join(meta['stores'])}",
        "- SQLite: WAL, synchronous=NORMAL, a file in a temp dir; PostgreSQL: loopback, a "
        "database made for the run; `CONN_MAX_AGE=0` (a new connection per request)",
        f"- {args.rounds} round(s), "
        f"variants interleaved; median (min{DASH}max); load average during the run "
        f"{summary(meta['loads'], '{:.2f}')}",
        "- command: `python bench/serve.py "
        + " ".join(a for a in meta["argv"] if a)
        + "` (see `bench/README.md`)",
        "",
    ]
    if raw.get("http"):
        lines += [
            "## HTTP arrangements",
            "",
            f"`tandem serve -w 2`, GET `/ping/` (one ORM query). Load client in a separate "
            f"process: {args.requests} requests one after another (c=1), then {args.requests} "
            f"over {args.concurrency} connections (c={args.concurrency}); a new connection per "
            "request (the server speaks HTTP/1.0). *busy*: two tasks spin in the pool "
            "meanwhile. *control*: no tasks, but two spinning processes outside the server, in "
            "the scheduling class task workers use (`SCHED_IDLE`): what any CPU load costs the "
            "web side on this machine, for comparison with *busy*. Server CPU: the serve "
            "process's CPU over the client's run, in % of one "
            "core (the client runs on the same 2 cores).",
            "",
            "| arrangement | tasks | load | req/s | p50 ms | p99 ms | server CPU % | errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in raw["http"]:
            for state in ("idle", "control", "busy"):
                for c in (1, args.concurrency):
                    runs = [r[f"{state}-c{c}"] for r in raw["http"][name] if f"{state}-c{c}" in r]
                    lines.append(
                        f"| {name} | {state} | c={c} | "
                        f"{summary([r['per_second'] for r in runs], '{:.0f}')} | "
                        f"{summary([r['p50_ms'] for r in runs], '{:.2f}')} | "
                        f"{summary([r['p99_ms'] for r in runs], '{:.1f}')} | "
                        f"{summary([r['server_cpu_percent'] for r in runs], '{:.0f}')} | "
                        f"{sum(r['errors'] for r in runs)} |"
                    )
        codes = {name: [r.get("exit_code") for r in rs] for name, rs in raw["http"].items()}
        lines += ["", f"Exit codes after SIGTERM, SIGTERM (tasks released): {codes}", ""]
    if raw.get("cpu"):
        serial = [r["seconds"] for r in raw["cpu"]["serial"]]
        lines += [
            "## CPU-bound speed-up through tandem's pools",
            "",
            f"{args.cpu_tasks} tasks counting primes below {args.primes_below:,} "
            f"(serial: {statistics.median(serial) / args.cpu_tasks:.2f} s per task), drained by "
            "an in-process `Supervisor` with 2 workers, after a warm-up that starts both. "
            "Wall: first enqueue to last outcome settled. Speed-up: median over rounds of "
            "serial / executor, in the same round.",
            "",
            "| executor | wall s | speed-up vs serial |",
            "|---|---|---|",
        ]
        for executor, runs in raw["cpu"].items():
            walls = [r["seconds"] for r in runs]
            ups = [s / w for s, w in zip(serial, walls, strict=False)]
            name = {
                "serial": "serial (one after another)",
                "process": "2 processes",
            }.get(executor, f"2 {executor}s")
            lines.append(f"| {name} | {summary(walls, '{:.2f}')} | {summary(ups, '{:.2f}')}x |")
        lines.append("")
    if raw.get("rss"):
        lines += [
            "## Memory: one process versus gunicorn + a worker",
            "",
            "Web + 4 task workers, default executor (subinterpreter on 3.14), after 50 requests "
            "and 8 tasks. Sum over every process of the deployment, children included. RSS counts "
            "pages shared between processes (gunicorn's forked workers) once per process; PSS "
            "splits them.",
            "",
            "| deployment | processes | sum of VmRSS MiB | sum of PSS MiB |",
            "|---|---|---|---|",
        ]
        for deployment, runs in raw["rss"].items():
            lines.append(
                f"| {deployment} | {runs[0]['processes']} | "
                f"{summary([r['rss_mib'] for r in runs], '{:.0f}')} | "
                f"{summary([r['pss_mib'] for r in runs], '{:.0f}')} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["client"]:
        print(json.dumps(client(int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", nargs="+", default=["http", "cpu", "rss"])
    parser.add_argument(
        "--db",
        nargs="+",
        default=["sqlite"],
        choices=list(STORES),
        help="stores for the http phase (the others use the first)",
    )
    parser.add_argument("--arrangements", nargs="+", default=list(ARRANGEMENTS))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--client-seconds",
        type=float,
        default=20.0,
        help="stop a client run after this long, whatever --requests says",
    )
    parser.add_argument("--spin-seconds", type=float, default=600.0)
    parser.add_argument("--cpu-tasks", type=int, default=6)
    parser.add_argument("--primes-below", type=int, default=PRIMES_BELOW)
    parser.add_argument("--output", type=Path, default=RESULTS / "serve.md")
    args = parser.parse_args(argv)

    raw: dict[str, Any] = {"http": {}, "cpu": {}, "rss": {}}
    loads: list[float] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tandem-bench-serve-")))
        sites = {db: stack.enter_context(Site(tmp, db)) for db in args.db}
        site = sites.get("sqlite") or next(iter(sites.values()))
        setup = site.info
        for each in sites.values():
            log(f"python {setup['python']}, Django {setup['django']}, {each.info['store']}")
        for rnd in range(1, args.rounds + 1):
            loads.append(os.getloadavg()[0])
            if "http" in args.phases:
                for db, each in sites.items():
                    for name in args.arrangements:
                        if db != "sqlite" and ARRANGEMENTS[name][1] != "subinterpreter":
                            continue
                        key = name if db == "sqlite" else f"{name} ({STORES[db]})"
                        raw["http"].setdefault(key, []).append(phase_http(each, name, args, rnd))
            if "cpu" in args.phases:
                for executor in ("serial", "thread", "subinterpreter", "process"):
                    result = phase_cpu(site, executor, args)
                    raw["cpu"].setdefault(executor, []).append(result)
                    log(f"  round {rnd} cpu {executor:15}: {result['seconds']:.2f} s")
            if "rss" in args.phases:
                for deployment in DEPLOYMENTS:
                    raw["rss"].setdefault(deployment, []).append(phase_rss(site, deployment, rnd))
            loads.append(os.getloadavg()[0])
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "django": setup["django"],
        "loads": loads,
        "argv": list(argv),
        "stores": [each.info["store"] for each in sites.values()],
    }
    report = render(meta, raw, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report + "\n")
    raw_dir = RESULTS / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (raw_dir / f"serve-{stamp}.json").write_text(json.dumps({"meta": meta, **raw}, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

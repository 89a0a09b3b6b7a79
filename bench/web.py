#!/usr/bin/env python
"""The HTTP side of ``tandem serve`` against plain WSGI servers: throughput, latency, slow clients.

    .venv-3.14/bin/python bench/web.py                      # every server, both phases
    .venv-3.14/bin/python bench/web.py --phases load --seconds 5 --servers tandem gunicorn

The view is ``/page/`` of ``bench/benchsite`` (one ORM query on SQLite, ~2 KB of HTML). Servers:

- ``tandem``: ``tandem serve -w 2`` (HTTP in threads of the main interpreter, tasks in a
  subinterpreter pool); ``tandem-interp``: the same with ``--web-interpreters 2`` (3.14);
- ``gunicorn``: ``gunicorn -w 2`` (sync workers), the classic deployment;
- ``granian``: ``granian --interface wsgi --workers 2`` (Rust);
- ``waitress``: ``waitress-serve --threads 8`` (the library tandem serve is built on, bare).

Every ``tandem serve`` runs with ``--no-access-log`` (none of the others logs requests by default).

Phase **load**: ``wrk`` (``apt-get install wrk``), ``--connections`` keep-alive connections on one
thread for ``--seconds``, after a 2 s warm-up: requests/s, p50 and p99 latency (wrk's own
histogram), errors, the server's CPU. Twice per server: *idle*, and *busy*, while two CPU-bound
tasks (``benchsite.tasks.spin``) run — in ``tandem serve``'s own pool, or in a separate
``tandem worker -w 2`` beside the other servers (same executor, same scheduling class), so the
machine carries the same task load in every row.

Phase **slow**: ``--slow`` connections (default 5,000) that send a request line and then trickle
one header byte every 2 s without ever finishing (opened by a separate process, ``web.py slow``).
Measured before and while they are held: the server's memory (VmRSS summed over its process
tree), its thread count, and ``--probes`` normal requests, each on a fresh connection with a 5 s
timeout (median and worst latency, failures). ``tandem serve`` runs with ``--header-timeout 120``
here, so that the connections are still held while it is measured (with the default 10 s they
are dropped, which is the point of the deadline, tested in ``tests/serve/test_http.py``).

Results: ``bench/results/web.md`` (a table per phase), raw numbers in
``bench/results/raw/web-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import (
    cpu_seconds,
    descendants,
    free_port,
    log,
    machine_info,
    stop,
    tree_memory,
    wait_serving,
    wait_until_quiet,
)

from serve import Site

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


SERVERS = ("tandem", "tandem-interp", "gunicorn", "granian", "waitress")
SPIN_SECONDS = 600.0  # the busy phase's tasks spin until the server is stopped


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the servers --------------------------------------------------------------------------------


def server_argv(name: str, port: int, header_timeout: float | None) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if name.startswith("tandem"):
        argv = ["-m", "django", "tandem", "serve", "--bind", bind, "-w", "2", "--grace", "5"]
        argv += ["--no-access-log"]
        if name == "tandem-interp":
            argv += ["--web-interpreters", "2"]
        if header_timeout:
            argv += ["--header-timeout", f"{header_timeout:g}"]
        return argv
    if name == "gunicorn":
        return ["-m", "gunicorn", "-w", "2", "-b", bind, "benchsite.wsgi:application"]
    if name == "granian":
        granian = ["-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1"]
        return [*granian, "--port", str(port), "--workers", "2", "benchsite.wsgi:application"]
    if name == "waitress":
        return ["-m", "waitress", "--listen", bind, "--threads", "8", "benchsite.wsgi:application"]
    raise ValueError(name)


def start_tasks(site: Site, name: str) -> subprocess.Popen[bytes] | None:
    """Two CPU-bound tasks running: in tandem serve's pool, or in a separate worker."""
    worker = None
    if not name.startswith("tandem"):
        worker = site.spawn(
            ["-m", "django", "tandem", "worker", "-w", "2"],
            f"worker-{name}",
            site.env("subinterpreter" if sys.version_info >= (3, 14) else "process"),
        )
    site.django(
        f"from benchsite.tasks import spin\nfor _ in range(2): spin.enqueue({SPIN_SECONDS})"
    )
    code = (
        "import time\nfrom tandem.models import TaskRecord\n"
        "deadline = time.monotonic() + 60\n"
        "while TaskRecord.objects.filter(status='RUNNING').count() < 2:\n"
        "    assert time.monotonic() < deadline, 'the tasks did not start'\n"
        "    time.sleep(0.1)\n"
    )
    site.django(code)
    time.sleep(1.0)  # both spinning
    return worker


# -- phase load ---------------------------------------------------------------------------------

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
WRK = ("wrk", "-t1", "--latency", "--timeout", "10s")


def wrk(port: int, seconds: float, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        [*WRK, f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/page/"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            raise RuntimeError(f"no {label}% latency in wrk's output:\n{out}")
        return float(match.group(1)) * UNITS[match.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    requests = re.search(r"^\s+(\d+) requests in", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)$", out, re.M)
    if not rps or not requests:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return {
        "requests": int(requests.group(1)),
        "per_second": float(rps.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


def phase_load(site: Site, name: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    label = f"load-{name}"
    executor = "subinterpreter" if sys.version_info >= (3, 14) else "process"
    proc = site.spawn(server_argv(name, port, None), label, site.env(executor))
    result: dict[str, Any] = {"load_average": os.getloadavg()[0]}
    worker = None
    try:
        wait_serving(port, proc)
        wrk(port, 2, args.connections)  # warm-up: connections, Django's first requests
        wait_until_quiet(proc.pid)
        for state in ("idle", "busy"):
            if state == "busy":
                worker = start_tasks(site, name)
            roots = [proc.pid] + ([worker.pid] if worker else [])
            before = sum(cpu_seconds(pid) for pid in descendants(proc.pid))
            started = time.perf_counter()
            numbers = wrk(port, args.seconds, args.connections)
            elapsed = time.perf_counter() - started
            after = sum(cpu_seconds(pid) for pid in descendants(proc.pid))
            numbers["server_cpu_percent"] = 100 * (after - before) / elapsed
            numbers["threads"] = sum(threads(pid) for root in roots for pid in descendants(root))
            result[state] = numbers
            log(
                f"  {name:14} {state}: {numbers['per_second']:7.0f} req/s  p50 "
                f"{numbers['p50_ms']:6.2f} ms  p99 {numbers['p99_ms']:7.2f} ms  CPU "
                f"{numbers['server_cpu_percent']:4.0f}%  non-2xx {numbers['non_2xx']}  "
                f"{numbers['socket_errors']}"
            )
    finally:
        if worker is not None:
            stop(worker, [signal.SIGTERM, signal.SIGTERM])
        result["exit_code"] = stop(proc, [signal.SIGTERM, signal.SIGTERM])
    site.ops("reset")
    return result


# -- phase slow ---------------------------------------------------------------------------------


def threads(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def probe(port: int, count: int, timeout: float = 5.0) -> dict[str, Any]:
    """``count`` GETs, each on a fresh connection: latencies (ms) and failures."""
    latencies, failures = [], []
    for _ in range(count):
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            connection.request("GET", "/page/")
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 200:
                failures.append(f"HTTP {response.status}")
                continue
        except OSError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "answered": len(latencies),
        "median_ms": statistics.median(latencies) if latencies else None,
        "max_ms": max(latencies) if latencies else None,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
    }


def slow_clients(port: int, count: int, hold: float) -> None:
    """(Runs as ``web.py slow``.) Open ``count`` connections, send a request line and one header
    byte every 2 s, never finishing; print how many connected, then hold for ``hold`` seconds
    (or until stdin closes)."""
    raise_open_files()
    selector = selectors.DefaultSelector()
    pending: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        pending.append(sock)
        selector.register(sock, selectors.EVENT_WRITE)
    connected: list[socket.socket] = []
    deadline = time.monotonic() + 30
    while len(connected) < count and time.monotonic() < deadline:
        for key, _ in selector.select(1.0):
            sock = key.fileobj  # type: ignore[assignment]
            selector.unregister(sock)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                try:
                    sock.send(b"GET /page/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    connected.append(sock)
                except OSError:
                    pass
    print(json.dumps({"connected": len(connected)}), flush=True)
    selector.register(sys.stdin, selectors.EVENT_READ)
    until = time.monotonic() + hold
    while time.monotonic() < until:
        if selector.select(2.0):
            break  # stdin closed: the harness is done
        for sock in connected:
            with contextlib.suppress(OSError):
                sock.send(b"x")
    for sock in [*connected, *pending]:
        sock.close()


def phase_slow(site: Site, name: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    label = f"slow-{name}"
    proc = site.spawn(server_argv(name, port, 120.0), label, site.env("subinterpreter"))
    result: dict[str, Any] = {"load_average": os.getloadavg()[0]}
    holder = None
    try:
        wait_serving(port, proc)
        probe(port, 20)  # warm-up
        wait_until_quiet(proc.pid)
        result["idle"] = {
            **tree_memory([proc.pid]),
            "threads": sum(threads(pid) for pid in descendants(proc.pid)),
            **probe(port, args.probes),
        }
        holder = subprocess.Popen(
            [sys.executable, __file__, "slow", str(port), str(args.slow), "120"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        connected = json.loads(holder.stdout.readline())["connected"]
        time.sleep(3.0)  # every connection accepted (or queued), a byte or two trickled
        memory = tree_memory([proc.pid])
        result["slow"] = {
            **memory,
            "threads": sum(threads(pid) for pid in descendants(proc.pid)),
            "connected": connected,
            **probe(port, args.probes),
        }
        idle, slow = result["idle"], result["slow"]
        log(
            f"  {name:14} {connected} slow clients: RSS {idle['rss_mib']:.0f} -> "
            f"{slow['rss_mib']:.0f} MiB, threads {idle['threads']} -> {slow['threads']}, "
            f"probe median {fmt_ms(slow['median_ms'])} max {fmt_ms(slow['max_ms'])}, "
            f"{slow['failures']}/{args.probes} failed {slow['first_failure'] or ''}"
        )
    finally:
        if holder is not None:
            assert holder.stdin is not None
            holder.stdin.close()
            try:
                holder.wait(30)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
        result["exit_code"] = stop(proc, [signal.SIGTERM, signal.SIGTERM])
    return result


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


# -- report -------------------------------------------------------------------------------------


def render(meta: dict[str, Any], raw: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# `tandem serve`'s HTTP side against plain WSGI servers (`bench/web.py`)",
        "",
        f"{meta['date']}, {meta['machine']['nproc']} cores ({meta['machine']['cpu']}), "
        f"Python {meta['python']}, load average {meta['load_average']} at the start (other "
        "work shares the machine: see each row's). View `/page/`: one "
        "ORM query (SQLite), ~2 KB HTML. Commit "
        f"{meta['machine'].get('commit', '?')}.",
    ]
    if raw.get("load"):
        lines += [
            "",
            f"## Keep-alive load: wrk, 1 thread, {args.connections} connections, "
            f"{args.seconds:g} s",
            "",
            "*busy*: two CPU-bound tasks running (tandem serve: in its pool; the others: in a "
            "separate `tandem worker -w 2`).",
            "",
            "| server | idle req/s | idle p50 | idle p99 | busy req/s | busy p50 | busy p99 | "
            "p99 busy/idle | errors | load avg |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for name, result in raw["load"].items():
            if "error" in result:
                lines.append(f"| {name} | FAILED: {result['error']} |||||||| ")
                continue
            idle, busy = result["idle"], result["busy"]
            errors = [
                f"{state}: {r['non_2xx']} non-2xx {r['socket_errors']}".strip()
                for state, r in (("idle", idle), ("busy", busy))
                if r["non_2xx"] or r["socket_errors"]
            ]
            lines.append(
                f"| {name} | {idle['per_second']:.0f} | {idle['p50_ms']:.2f} ms | "
                f"{idle['p99_ms']:.2f} ms | {busy['per_second']:.0f} | {busy['p50_ms']:.2f} ms | "
                f"{busy['p99_ms']:.2f} ms | {busy['p99_ms'] / idle['p99_ms']:.1f}x | "
                f"{'; '.join(errors) or '-'} | {result['load_average']:.1f} |"
            )
    if raw.get("slow"):
        lines += [
            "",
            f"## {args.slow} slow clients (headers never finished), {args.probes} normal "
            "requests meanwhile, each on a new connection (5 s timeout)",
            "",
            "| server | RSS idle | RSS slow | + MiB | threads idle | threads slow | "
            "connected | probe median | probe max | probes failed | load avg |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for name, result in raw["slow"].items():
            if "error" in result:
                lines.append(f"| {name} | FAILED: {result['error']} |||||||||")
                continue
            idle, slow = result["idle"], result["slow"]
            failed = f"{slow['failures']}/{args.probes}"
            if slow["first_failure"]:
                failed += f" ({slow['first_failure']})"
            lines.append(
                f"| {name} | {idle['rss_mib']:.0f} MiB | {slow['rss_mib']:.0f} MiB | "
                f"{slow['rss_mib'] - idle['rss_mib']:.0f} | {idle['threads']} | "
                f"{slow['threads']} | {slow['connected']} | {fmt_ms(slow['median_ms'])} | "
                f"{fmt_ms(slow['max_ms'])} | {failed} | {result['load_average']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["slow"]:
        slow_clients(int(argv[1]), int(argv[2]), float(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", nargs="+", choices=("load", "slow"), default=["load", "slow"])
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk's duration per run")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections")
    parser.add_argument("--slow", type=int, default=5000, help="slow clients in phase slow")
    parser.add_argument("--probes", type=int, default=20, help="normal requests among them")
    parser.add_argument("--output", type=Path, default=RESULTS / "web.md")
    args = parser.parse_args(argv)
    if not shutil.which("wrk") and "load" in args.phases:
        parser.error("phase load needs wrk: apt-get install wrk")
    servers = [s for s in args.servers if s != "tandem-interp" or sys.version_info >= (3, 14)]
    raise_open_files()
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "python": sys.version.split()[0],
        "load_average": f"{os.getloadavg()[0]:.2f}",
    }
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tandem-web-") as tmp, Site(Path(tmp)) as site:
        for phase, run in (("load", phase_load), ("slow", phase_slow)):
            if phase not in args.phases:
                continue
            log(f"phase {phase}")
            raw[phase] = {}
            for name in servers:
                try:
                    raw[phase][name] = run(site, name, args)
                except Exception as exc:
                    log(f"  {name}: FAILED {exc}\n{site.log_tail(f'{phase}-{name}')}")
                    raw[phase][name] = {"error": str(exc).splitlines()[0]}
    report = render(meta, raw, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / "raw").mkdir(parents=True, exist_ok=True)
    (RESULTS / "raw" / f"web-{stamp}.json").write_text(json.dumps({**meta, **raw}, indent=2))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``tandem serve --supervise``: a tiny parent process that keeps the one ``serve`` process running.

One process that hosts subinterpreters has no crash isolation: ``os._exit`` or a segfault in any
task or request ends the web server and every worker together. This parent restarts it. Leases
make a restart lose nothing: a task the dead process held goes back to READY when its lease
expires, and the new process (or any other worker) runs it again.

``serve --supervise`` parses its arguments, then replaces itself (``exec``, same pid) with this file
run as a plain script, so the parent holds no Django, no database connection and no threads::

    python -P .../tandem/serve/supervise.py -- python manage.py tandem serve --bind ...

The parent starts the child (the same command line without ``--supervise``) in its own process
group, so a terminal's Ctrl-C reaches the child once, through the parent. SIGTERM and SIGINT are
forwarded to the child. When the child exits after a forwarded signal — or with status 0 — the
parent exits with the child's status; when it crashes (non-zero status, or killed by a signal the
parent did not forward) the parent prints a line and starts it again after a short back-off.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from types import FrameType

BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER = 60.0  # a child that ran this long starts the back-off from the beginning again
PREFIX = "tandem supervise:"


def child_argv(flag: str = "--supervise") -> list[str]:
    """This process's command line without ``flag``: how to start the supervised child."""
    argv = list(sys.orig_argv)
    if flag not in argv[1:]:
        raise RuntimeError(f"{flag} works only from the command line (it is not in {argv!r})")
    return [sys.executable, *(arg for arg in argv[1:] if arg != flag)]


def exec_parent(argv: list[str]) -> None:
    """Become the supervising parent of ``argv`` (never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-P", os.path.abspath(__file__), "--", *argv])


def describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def exit_status(code: int) -> int:
    return 128 - code if code < 0 else code


def say(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


def supervise(argv: list[str]) -> int:
    child: subprocess.Popen[bytes] | None = None
    forwarded: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        forwarded.append(signum)
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    attempt = 0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv, process_group=0)
        say(f"started serve (pid {child.pid})")
        code = child.wait()
        if forwarded or code == 0:
            return exit_status(code)
        attempt = 0 if time.monotonic() - started >= STABLE_AFTER else attempt
        delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
        attempt += 1
        say(f"serve (pid {child.pid}) {describe(code)}; restarting in {delay:g}s")
        until = time.monotonic() + delay
        while not forwarded and (remaining := until - time.monotonic()) > 0:
            time.sleep(min(remaining, 0.1))
        if forwarded:
            return 0  # asked to stop while nothing was running


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(f"usage: {sys.argv[0]} -- COMMAND [ARG...]", file=sys.stderr)
        sys.exit(2)
    sys.exit(supervise(argv))


if __name__ == "__main__":
    main()

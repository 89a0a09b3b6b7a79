"""Run N ``rq worker`` processes side by side, as RQ's docs recommend for concurrency ("start more
workers", under Supervisor or systemd): ``python -m contenders.sites.rq_workers N RQ-ARGS...``.

This small launcher (stdlib only) plays the process manager: it starts the workers in its own
process group and waits for them. Stopping it is SIGTERM to the whole group (what systemd does by
default), which every worker gets directly and obeys at once; the launcher only waits, and kills
the workers if they have not exited 10 s later. (RQ's own ``rq worker-pool -n 2`` was the first
choice, but with SIGTERM sent to its whole group, one of its workers, which then gets SIGTERM and
the pool's SIGINT, stayed blocked in BLMOVE in 2 runs out of 6 and the pool never exited.)
"""

import contextlib
import signal
import subprocess
import sys

GRACE = 10  # seconds


def main() -> int:
    count, rq_args = int(sys.argv[1]), sys.argv[2:]
    argv = [sys.executable, "-m", "rq.cli", "worker", *rq_args]
    workers = [subprocess.Popen(argv) for _ in range(count)]

    def kill_workers(*_: object) -> None:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()

    def stopping(signum: int, frame: object) -> None:
        # The workers got the same signal from the process group; only bound their exit here
        # (the main thread is blocked in Popen.wait(), which this handler must not re-enter).
        signal.signal(signal.SIGALRM, kill_workers)
        signal.alarm(GRACE)

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    try:
        codes = [worker.wait() for worker in workers]
    finally:
        kill_workers()
    return max(codes, default=0)


if __name__ == "__main__":
    sys.exit(main())

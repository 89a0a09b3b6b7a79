"""Run N copies of one Python command side by side, as a process manager would (systemd,
Supervisor): ``python -m contenders.sites.replicas N ARGS...`` runs ``python ARGS...`` N times.

For a peer whose worker runs one task at a time and whose docs scale it by starting more worker
processes (django-tasks-db's ``db_worker``, RQ's ``rq worker``), so that it gets
``bench/compare --slots`` worker slots like every other contender. Stdlib only. Stopping it is
SIGTERM to the whole process group (what systemd does by default), which every copy gets
directly; this launcher only waits, and kills the copies if they have not exited 10 s later.
"""

import contextlib
import signal
import subprocess
import sys

GRACE = 10  # seconds


def main() -> int:
    count, args = int(sys.argv[1]), sys.argv[2:]
    copies = [subprocess.Popen([sys.executable, *args]) for _ in range(count)]

    def kill_copies(*_: object) -> None:
        for copy in copies:
            with contextlib.suppress(ProcessLookupError):
                copy.kill()

    def stopping(signum: int, frame: object) -> None:
        # The copies got the same signal from the process group; only bound their exit here
        # (the main thread is blocked in Popen.wait(), which this handler must not re-enter).
        signal.signal(signal.SIGALRM, kill_copies)
        signal.alarm(GRACE)

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    try:
        codes = [copy.wait() for copy in copies]
    finally:
        kill_copies()
    return max(codes, default=0)


if __name__ == "__main__":
    sys.exit(main())

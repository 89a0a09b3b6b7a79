"""Run ``manage.py qcluster`` the way a process supervisor does: SIGTERM to its main process only.

The harness stops a worker with SIGTERM to its whole process group. django-q2 (1.11.1) does not
survive that: its sentinel process keeps SIGTERM's default action and dies while waiting on the
cluster's stop event, and the main process then hangs for good in ``multiprocessing``'s
``Event.set()`` (seen 3 times out of 3). SIGTERM to the main process alone stops the cluster
cleanly in well under a second, so this launcher (stdlib only, no Django: a small extra process)
starts qcluster in its own session and forwards SIGTERM/SIGINT to the main process only; if the
cluster has not exited 10 s later it kills the cluster's whole session.
"""

import contextlib
import os
import signal
import subprocess
import sys

GRACE = 10  # seconds


def main() -> int:
    argv = [sys.executable, "-m", "django", "qcluster"]
    cluster = subprocess.Popen(argv, start_new_session=True)

    def kill_cluster(*_: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.pid, signal.SIGKILL)

    def forward(signum: int, frame: object) -> None:
        # Only signal here: the main thread is blocked in cluster.wait(), which this handler
        # must not re-enter. SIGALRM ends a cluster that does not stop in time.
        cluster.send_signal(signum)
        signal.signal(signal.SIGALRM, kill_cluster)
        signal.alarm(GRACE)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        return cluster.wait()
    finally:
        kill_cluster()  # whatever of its session is left (normally nothing)


if __name__ == "__main__":
    sys.exit(main())

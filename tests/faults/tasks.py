"""The fault tier's task: ``hold(key, seconds)`` runs for ``seconds`` of pure Python and keeps a
ledger of its own life, independent of the task store.

Each run writes one file ``<key>.<pid>.<nonce>`` in ``TANDEM_FAULTS_LEDGER``: ``start <t>``, then
``tick <t>`` every ``TICK`` seconds while it runs, then ``end <t>`` — ``t`` on the machine's real
clock (``time.time()``). A run that is killed or interrupted just stops ticking: its ticks are
exactly the moments it was alive.
"""

from __future__ import annotations

import os
import time
import uuid

from django.tasks import task

from tandem import task as tandem_task

TICK = 0.05


@task
def hold(key: str, seconds: float) -> str:
    return _hold(key, seconds)


@tandem_task(concurrency_key="faults-one-at-a-time")
def hold_keyed(key: str, seconds: float) -> str:
    """``hold`` under one concurrency key, limit 1: at most one run alive across every worker."""
    return _hold(key, seconds)


def _hold(key: str, seconds: float) -> str:
    path = os.path.join(
        os.environ["TANDEM_FAULTS_LEDGER"], f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"start {time.time():.6f}\n".encode())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(TICK)
            os.write(fd, f"tick {time.time():.6f}\n".encode())
        os.write(fd, f"end {time.time():.6f}\n".encode())
    finally:
        os.close(fd)
    return key

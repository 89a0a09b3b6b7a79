"""The task of tests/scale: a no-op that leaves one line in a ledger file per execution.

The ledger is independent of the task store: whatever the store's rows say, the files show how
often each task really ran, and in which process. ``TANDEM_SCALE_LEDGER`` names the directory;
each process appends to ``<pid>.log`` (one ``write()`` per line, with ``O_APPEND``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from django.tasks import task


@task
def mark(key: str, seconds: float = 0.0) -> None:
    if seconds:
        time.sleep(seconds)
    path = os.path.join(os.environ["TANDEM_SCALE_LEDGER"], f"{os.getpid()}.log")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key}\n".encode())
    finally:
        os.close(fd)


class Ledger:
    """The runs a ledger directory records."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def lines(self) -> dict[int, list[str]]:
        """pid -> the keys that process ran, in order."""
        return {
            int(path.stem): path.read_text().splitlines()
            for path in sorted(self.directory.glob("*.log"))
        }

    def total(self) -> int:
        return sum(len(keys) for keys in self.lines().values())

    def per_process(self) -> Counter[int]:
        return Counter({pid: len(keys) for pid, keys in self.lines().items()})

    def runs(self) -> Counter[str]:
        """key -> how many times it ran."""
        return Counter(key for keys in self.lines().values() for key in keys)

"""``python -m tests.chaos.ops enqueue COUNT PREFIX SECONDS IDS_FILE [FIRST]``: store COUNT
``append`` tasks (keys ``PREFIX-<n>``, ``n`` from FIRST, default 0) with one
``tandem.enqueue_many()`` call and write their ids, in order, to IDS_FILE. ``group COUNT PREFIX
SECONDS OUT``: the same tasks as one ``tandem.group()`` with a callback (``group_then``); writes
the group id, the items' ids and the callback's id to OUT. ``feed PREFIX SECONDS DIRECTORY``: the
same as ``enqueue``, batch after batch, from one process (the chaos feeder): for each request
``DIRECTORY/batch-<n>.json`` in turn (``{"count": ..., "first": ...}``) writes the ids to
``DIRECTORY/ids-<n>.json``; a count of 0 ends it. The other commands are the scale tier's
(``tests/support/scale_ops.py``)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tests.support import scale_ops as ops


def enqueue(count: int, prefix: str, seconds: float, first: int = 0) -> list[str]:
    import tandem
    from tests.chaos.tasks import append

    items = [((f"{prefix}-{n}", seconds), {}) for n in range(first, first + count)]
    return [result.id for result in tandem.enqueue_many(append, items)]


def feed(prefix: str, seconds: float, directory: Path) -> None:
    """Answer the feeder's requests in order until one asks for no tasks (or the test is gone)."""
    from django.db import connections

    parent = os.getppid()
    for n in range(sys.maxsize):
        request = directory / f"batch-{n}.json"
        while not request.exists():
            if os.getppid() != parent:
                return
            time.sleep(0.01)
        wanted = json.loads(request.read_text())
        if not wanted["count"]:
            return
        # A fresh connection each batch: the store may have restarted since the last one.
        connections.close_all()
        written = directory / f"ids-{n}.json.tmp"
        written.write_text(json.dumps(enqueue(wanted["count"], prefix, seconds, wanted["first"])))
        written.replace(directory / f"ids-{n}.json")


def group(count: int, prefix: str, seconds: float) -> dict[str, object]:
    """``tandem.group()`` of ``count`` ``append`` tasks with ``group_then`` as its callback."""
    import tandem
    from tests.chaos.tasks import append, group_then

    made = tandem.group(
        [(append, [f"{prefix}-{n}", seconds], None) for n in range(count)], then=group_then
    )
    return {"group": made.id, "ids": list(made.member_ids), "then": made.then_id}


def main(argv: list[str]) -> None:
    command, *args = argv
    if command not in ("enqueue", "group", "feed"):
        ops.main(argv)
        return
    import django

    django.setup()
    if command == "feed":
        prefix, seconds, directory = args
        feed(prefix, float(seconds), Path(directory))
        return
    count, prefix, seconds, out, *first = args
    if command == "enqueue":
        made: object = enqueue(int(count), prefix, float(seconds), int(first[0]) if first else 0)
    else:
        made = group(int(count), prefix, float(seconds))
    Path(out).write_text(json.dumps(made))


if __name__ == "__main__":
    main(sys.argv[1:])

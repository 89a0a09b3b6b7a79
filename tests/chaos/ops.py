"""``python -m tests.chaos.ops enqueue COUNT PREFIX SECONDS IDS_FILE [FIRST]``: store COUNT
``append`` tasks (keys ``PREFIX-<n>``, ``n`` from FIRST, default 0) with one
``tandem.enqueue_many()`` call and write their ids, in order, to IDS_FILE. ``group COUNT PREFIX
SECONDS OUT``: the same tasks as one ``tandem.group()`` with a callback (``group_then``); writes
the group id, the items' ids and the callback's id to OUT. The other commands are the scale
tier's (``tests/support/scale_ops.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support import scale_ops as ops


def enqueue(count: int, prefix: str, seconds: float, first: int = 0) -> list[str]:
    import tandem
    from tests.chaos.tasks import append

    items = [((f"{prefix}-{n}", seconds), {}) for n in range(first, first + count)]
    return [result.id for result in tandem.enqueue_many(append, items)]


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
    if command not in ("enqueue", "group"):
        ops.main(argv)
        return
    import django

    django.setup()
    count, prefix, seconds, out, *first = args
    if command == "enqueue":
        made: object = enqueue(int(count), prefix, float(seconds), int(first[0]) if first else 0)
    else:
        made = group(int(count), prefix, float(seconds))
    Path(out).write_text(json.dumps(made))


if __name__ == "__main__":
    main(sys.argv[1:])

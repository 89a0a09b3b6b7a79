"""``python -m tests.chaos.ops enqueue COUNT PREFIX SECONDS IDS_FILE [FIRST]``: store COUNT
``append`` tasks (keys ``PREFIX-<n>``, ``n`` from FIRST, default 0) with one
``tandem.enqueue_many()`` call and write their ids, in order, to IDS_FILE. The other commands
are the scale tier's (``tests/scale/ops.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.scale import ops


def enqueue(count: int, prefix: str, seconds: float, first: int = 0) -> list[str]:
    import tandem
    from tests.chaos.tasks import append

    items = [((f"{prefix}-{n}", seconds), {}) for n in range(first, first + count)]
    return [result.id for result in tandem.enqueue_many(append, items)]


def main(argv: list[str]) -> None:
    command, *args = argv
    if command != "enqueue":
        ops.main(argv)
        return
    import django

    django.setup()
    count, prefix, seconds, out, *first = args
    ids = enqueue(int(count), prefix, float(seconds), int(first[0]) if first else 0)
    Path(out).write_text(json.dumps(ids))


if __name__ == "__main__":
    main(sys.argv[1:])

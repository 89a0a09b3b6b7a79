"""``python -m tests.chaos.ops enqueue COUNT PREFIX SECONDS IDS_FILE``: store COUNT ``append``
tasks (keys ``PREFIX-<n>``) with one ``tandem.enqueue_many()`` call and write their ids, in order,
to IDS_FILE. The other commands are the scale tier's (``tests/support/scale_ops.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support import scale_ops as ops


def enqueue(count: int, prefix: str, seconds: float) -> list[str]:
    import tandem
    from tests.chaos.tasks import append

    items = [((f"{prefix}-{n}", seconds), {}) for n in range(count)]
    return [result.id for result in tandem.enqueue_many(append, items)]


def main(argv: list[str]) -> None:
    command, *args = argv
    if command != "enqueue":
        ops.main(argv)
        return
    import django

    django.setup()
    count, prefix, seconds, out = args
    Path(out).write_text(json.dumps(enqueue(int(count), prefix, float(seconds))))


if __name__ == "__main__":
    main(sys.argv[1:])

"""``python -m tests.faults.ops enqueue COUNT PREFIX SECONDS IDS_FILE [TASK]``: store COUNT ``hold``
tasks (or TASK of ``tests.faults.tasks``, e.g. ``hold_keyed``; keys ``PREFIX-<n>``) with one
``tandem.enqueue_many()`` call; write their ids, in order, to IDS_FILE. The other commands are the
scale tier's (``tests/support/scale_ops.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support import scale_ops as ops


def main(argv: list[str]) -> None:
    command, *args = argv
    if command != "enqueue":
        ops.main(argv)
        return
    import django

    django.setup()
    import tandem
    from tests.faults import tasks

    count, prefix, seconds, out, *name = args
    task = getattr(tasks, name[0] if name else "hold")
    items = [((f"{prefix}-{n}", float(seconds)), {}) for n in range(int(count))]
    ids = [result.id for result in tandem.enqueue_many(task, items)]
    Path(out).write_text(json.dumps(ids))


if __name__ == "__main__":
    main(sys.argv[1:])

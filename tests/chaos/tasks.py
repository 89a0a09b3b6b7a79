"""The chaos task: appends its key and its process id to the ledger table, one row per run."""

from __future__ import annotations

import os
import time

from django.tasks import task


@task
def append(key: str, seconds: float = 0.0) -> None:
    from tests.models import Ledger

    if seconds:
        time.sleep(seconds)
    # Autocommit: once the row is in, a kill before the outcome is stored makes a duplicate run.
    Ledger.objects.using("ledger").create(key=key, worker=str(os.getpid()))


@task
def group_then(group_id: str) -> int:
    """A group's callback: appends ``then:<group id>`` and its process id to the ledger."""
    import tandem
    from tests.models import Ledger

    done = tandem.get_group(group_id).done
    Ledger.objects.using("ledger").create(key=f"then:{group_id}", worker=str(os.getpid()))
    return done

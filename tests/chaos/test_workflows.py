"""Chaos for workflows: a group's callback is enqueued exactly once while three workers are
killed with SIGKILL every few seconds (and restarted), on the run's database and on Redis.

At the end every item is SUCCESSFUL and in the ledger; the callback is one task (one id, made
when the group was stored), SUCCESSFUL, ran at most once per attempt (an attempt's worker may
be killed while it runs: at least once, as every task), and only after every item had run.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.chaos.monkey import SETTINGS, Deployment, Monkey, TableLedger, scaled, seed
from tests.chaos.test_chaos import LEASE, WAIT
from tests.models import Ledger
from tests.support.processes import wait_until
from tests.support.scale import STORES, Scale

pytestmark = [
    pytest.mark.process,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

ITEMS = scaled("GROUP_ITEMS", 600)
KILLS = scaled("GROUP_KILLS", 6)
#: Seconds per item: 600 items on 12 slots are 15 s of work, which six kills 0.5-1.5 s apart
#: (each waiting for its replacement to start) outlast only on a loaded machine, where restarts
#: take seconds: then the kills stop after the third once every item ran (``at_least``).
ITEM_SECONDS = 0.3


def store_group(scale: Scale, count: int, prefix: str, seconds: float) -> dict[str, object]:
    out = scale.directory / f"group-{prefix}.json"
    child = scale.children.python(
        "-m",
        "tests.chaos.ops",
        "group",
        str(count),
        prefix,
        repr(seconds),
        str(out),
        name=f"group-{prefix}",
        settings_module=SETTINGS,
        **scale.env,
    )
    assert child.wait(WAIT) == 0, child.output()
    stored: dict[str, object] = json.loads(out.read_text())
    return stored


@pytest.mark.parametrize("scale", STORES, indirect=True)
def test_a_groups_callback_is_enqueued_once_through_kills(scale: Scale) -> None:
    deployment = Deployment(scale, "worker", 3, "-w", "4", TANDEM_TEST_LEASE=LEASE)
    monkey = Monkey(deployment, seed())
    stored = store_group(scale, ITEMS, "grouped", ITEM_SECONDS)
    ids, then_id, group_id = stored["ids"], stored["then"], stored["group"]
    assert isinstance(ids, list) and isinstance(then_id, str) and len(ids) == ITEMS
    then_key = f"then:{group_id}"
    # Half the kills at least while items remain; the rest unless they all ran already.
    monkey.kill(KILLS, TableLedger(), ITEMS, at_least=KILLS // 2)
    wait_until(
        lambda: Ledger.objects.filter(key=then_key).exists(),
        "the group's callback to run",
        timeout=WAIT,
        alive=deployment.live,
    )
    assert scale.wait_finished(ITEMS + 1, timeout=WAIT) == {"SUCCESSFUL": ITEMS + 1}
    deployment.stop()

    rows = scale.snapshot([*ids, then_id])
    assert all(row is not None and row["status"] == "SUCCESSFUL" for row in rows)
    *items, then = rows
    assert then is not None
    runs = Counter(Ledger.objects.values_list("key", flat=True))
    assert set(runs) == {f"grouped-{n}" for n in range(ITEMS)} | {then_key}
    for row in items:
        assert row is not None and runs[row["key"]] <= len(row["worker_ids"]), row
    # One callback task, run at most once per attempt (killed attempts may have run).
    assert 1 <= runs[then_key] <= len(then["worker_ids"]), (runs[then_key], then)
    # ... and only after every item had run.
    first_run: dict[str, int] = {}
    for key, row_id in Ledger.objects.order_by("id").values_list("key", "id"):
        first_run.setdefault(key, row_id)
    then_first = first_run.pop(then_key)
    assert then_first > max(first_run.values())
    print(
        f"group chaos ({scale.env['TANDEM_SCALE_STORE']}): {ITEMS} items, "
        f"{len(deployment.killed)} kills, callback attempts {len(then['worker_ids'])}, "
        f"callback runs {runs[then_key]}"
    )

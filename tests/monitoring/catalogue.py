"""Every metric tandem exposes: name (as written in the text format), type and labels.

The tests compare what ``/tasks/metrics/`` and ``tandem serve``'s ``/-/metrics`` expose, and what
``docs/reference/metrics.md`` lists, against this table: a metric added, renamed or relabelled
must change all three.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

BACKEND_QUEUE = frozenset({"backend", "queue"})
POOL = frozenset({"backend", "pool", "worker_id"})

#: exposed name -> (type, labels)
CATALOGUE: dict[str, tuple[str, frozenset[str]]] = {
    # Gauges read from the store at scrape time.
    "tandem_queue_ready_tasks": ("gauge", BACKEND_QUEUE),
    "tandem_queue_running_tasks": ("gauge", BACKEND_QUEUE),
    "tandem_queue_failed_tasks": ("gauge", BACKEND_QUEUE),
    "tandem_queue_oldest_ready_age_seconds": ("gauge", BACKEND_QUEUE),
    "tandem_queue_live_workers": ("gauge", BACKEND_QUEUE),
    "tandem_queue_paused": ("gauge", BACKEND_QUEUE),
    "tandem_rate_limited_seconds": ("gauge", frozenset({"backend", "limit"})),
    "tandem_workers": ("gauge", frozenset({"backend"})),
    "tandem_store_up": ("gauge", frozenset({"backend"})),
    "tandem_pool_executor_workers": (
        "gauge",
        frozenset({"backend", "pool", "executor", "configured_executor"}),
    ),
    "tandem_pool_failing": ("gauge", frozenset({"backend", "pool"})),
    # Kept by the supervisors of the scraped process.
    "tandem_tasks_total": ("counter", frozenset({"backend", "queue", "task", "outcome"})),
    "tandem_task_retries_total": ("counter", frozenset({"backend", "queue", "task"})),
    "tandem_task_duration_seconds": ("histogram", frozenset({"backend", "queue", "task"})),
    "tandem_recovered_leases_total": ("counter", frozenset({"backend", "status"})),
    "tandem_pool_restarts_total": ("counter", POOL),
    "tandem_pool_workers": ("gauge", POOL),
    "tandem_pool_busy_workers": ("gauge", POOL),
}

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference" / "metrics.md"


def exposed(text: str) -> dict[str, tuple[str, set[frozenset[str]]]]:
    """Exposed name -> (type, the label sets its samples carry), from the text format.

    Counters are named with their ``_total`` suffix, as scrapers see them; a histogram's ``le``
    and the ``_created`` series prometheus_client adds are left out.
    """
    found: dict[str, tuple[str, set[frozenset[str]]]] = {}
    for family in text_string_to_metric_families(text):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {
            frozenset(sample.labels) - {"le"}
            for sample in family.samples
            if not sample.name.endswith("_created")
        }
        found[name] = (family.type, labels)
    return found


def documented() -> set[str]:
    """The metric names the reference page's tables list (first column)."""
    names = set()
    for line in DOCS.read_text().splitlines():
        if line.startswith("| `tandem_"):
            names.add(line.split("`")[1])
    return names


def check(text: str, *, with_samples: set[str]) -> None:
    """Every catalogued metric is exposed with its type (and nothing else); those named in
    ``with_samples`` carry samples, each with exactly the catalogued labels."""
    found = exposed(text)
    assert set(found) == set(CATALOGUE), (sorted(set(found) ^ set(CATALOGUE)), text)
    for name, (kind, labels) in CATALOGUE.items():
        got_kind, got_labels = found[name]
        assert got_kind == kind, (name, got_kind)
        if name in with_samples:
            assert got_labels == {labels}, (name, got_labels)
        else:
            assert got_labels <= {labels}, (name, got_labels)

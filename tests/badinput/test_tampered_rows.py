"""The tampered-row corpus: a stored task that no ``enqueue()`` would write.

Whoever can write to the task store can put anything in a row. Each row here names something
that is not a registered task, or carries arguments that are not a JSON array and a JSON object
(corrupt text, or valid JSON of another shape). Each one must end FAILED with a
``TaskNotRunnable`` error that says why, after exactly one attempt whatever its
``max_attempts``; it must never run; and the supervisor must go on with the good task claimed in
the same batch (a row that breaks the claim would wedge every later round).

``resolve_task``'s refusals one by one are in tests/unit/test_resolve_task.py, and a row naming
a non-task run by the supervisor in tests/conformance/test_execution.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from django.db import DatabaseError, connection
from django.tasks import TaskResultStatus
from django.tasks.signals import task_started

from tandem.backends.base import TandemBackend
from tandem.brokers.base import Unreadable
from tandem.brokers.database import TABLE, DatabaseBroker
from tandem.brokers.redis import RedisBroker
from tests import tasks
from tests.models import Ledger
from tests.support.conformance import capture, store_row
from tests.support.pools import EXECUTORS, pool

pytestmark = pytest.mark.django_db(transaction=True)  # pool threads use their own connections

NOT_A_TASK = "not a Task; only functions decorated with @task can be run from a stored row."
NOT_INSTALLED = (
    "is not in an installed app or the project's package; tandem imports task modules only "
    "from INSTALLED_APPS and the package of DJANGO_SETTINGS_MODULE (or modules already imported)."
)
TAMPERED = "the row was tampered with or corrupted, and the task was not run."


class Row(NamedTuple):
    name: str
    task_path: str
    column: str | None  # a column to overwrite with ``text`` after the row is stored
    text: str
    message: str


def reason_of(text: str) -> str:
    """Why ``text`` does not parse as JSON, in the words of this Python's ``json``."""
    try:
        json.loads(text)
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"{text!r} is JSON")  # the table is wrong


def not_json(column: str, text: str) -> str:
    """The message for ``column`` holding ``text``, which does not parse as JSON."""
    wanted = "a JSON array" if column == "args" else "a JSON object"
    return (
        f"The stored row's {column} must be {wanted}, but it is not valid JSON "
        f"({reason_of(text)}): {text!r}; {TAMPERED}"
    )


def other_shape(column: str, found: str) -> str:
    wanted = "a JSON array" if column == "args" else "a JSON object"
    return f"The stored row's {column} must be {wanted}, but it is {found}; {TAMPERED}"


ROWS = [
    Row(
        "os.system",
        "os.system",
        None,
        "",
        f"'os.system' is a builtins.builtin_function_or_method, {NOT_A_TASK}",
    ),
    Row(
        "builtins.exec",
        "builtins.exec",
        None,
        "",
        f"'builtins.exec' is a builtins.builtin_function_or_method, {NOT_A_TASK}",
    ),
    Row(
        "module outside the project",
        "antigravity.fly",
        None,
        "",
        f"Task path 'antigravity.fly' {NOT_INSTALLED}",
    ),
    Row(
        "unknown module",
        "tests.no_such_module.task",
        None,
        "",
        "Task path 'tests.no_such_module.task' does not import: "
        "No module named 'tests.no_such_module'.",
    ),
    Row(
        "plain function",
        "tests.tasks.not_a_task",
        None,
        "",
        f"'tests.tasks.not_a_task' is a builtins.function, {NOT_A_TASK}",
    ),
    Row(
        "args: truncated JSON",
        "tests.tasks.ledger",
        "args",
        '["tampered"',
        not_json("args", '["tampered"'),
    ),
    Row("args: not JSON", "tests.tasks.ledger", "args", "rm -rf /", not_json("args", "rm -rf /")),
    Row(
        "kwargs: not JSON",
        "tests.tasks.ledger",
        "kwargs",
        "{'key': 'x'}",
        not_json("kwargs", "{'key': 'x'}"),
    ),
    Row(
        "args: a JSON object",
        "tests.tasks.ledger",
        "args",
        '{"key": "tampered"}',
        other_shape("args", "a JSON object {'key': 'tampered'}"),
    ),
    Row(
        "args: a JSON string",
        "tests.tasks.ledger",
        "args",
        '"tampered"',
        other_shape("args", "a JSON string 'tampered'"),
    ),
    Row(
        "kwargs: a JSON array",
        "tests.tasks.ledger",
        "kwargs",
        '["tampered"]',
        other_shape("kwargs", "a JSON array ['tampered']"),
    ),
]


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def holds_only_json(backend: TandemBackend) -> bool:
    """Whether the store refuses text that is not JSON whatever the client does (jsonb)."""
    return isinstance(backend.broker, DatabaseBroker) and connection.vendor == "postgresql"


def refuses_updates(backend: TandemBackend) -> bool:
    """Whether the store checks a row's JSON on every update of it (MariaDB's CHECK)."""
    return isinstance(backend.broker, DatabaseBroker) and connection.vendor == "mysql"


def overwrite(broker: Any, task_id: str, column: str, text: str) -> None:
    """Write ``text`` into a stored row's ``column`` as it is, past the store's own checks."""
    if isinstance(broker, RedisBroker):
        broker.client.hset(broker.key("task", task_id), column, text)
        return
    assert isinstance(broker, DatabaseBroker)
    vendor = connection.vendor
    cast = "::jsonb" if vendor == "postgresql" else ""
    off, on = {
        "sqlite": ("PRAGMA ignore_check_constraints = ON", "PRAGMA ignore_check_constraints = OFF"),
        "mysql": (
            "SET SESSION check_constraint_checks = 0",
            "SET SESSION check_constraint_checks = 1",
        ),
    }.get(vendor, ("", ""))
    with connection.cursor() as cursor:
        if off and not is_json(text):
            cursor.execute(off)
        try:
            cursor.execute(
                f"UPDATE {TABLE} SET {column} = %s{cast} WHERE id = %s",
                [text, broker._id_param(task_id)],
            )
        finally:
            if on:
                cursor.execute(on)


def plant(backend: TandemBackend, row: Row, marker: Path) -> str:
    task_id = store_row(backend, row.task_path, args=[f"touch {marker}"], max_attempts=3)
    if row.column is not None:
        overwrite(backend.broker, task_id, row.column, row.text)
    return task_id


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_a_tampered_row_fails_without_running_and_the_worker_goes_on(
    backend: TandemBackend, drain: Any, tmp_path: Path, row: Row
) -> None:
    marker = tmp_path / "ran"
    if row.column is not None and not is_json(row.text) and holds_only_json(backend):
        # jsonb holds only JSON: PostgreSQL itself refuses the corrupt text.
        task_id = store_row(backend, row.task_path)
        with pytest.raises(DatabaseError, match="invalid input syntax for type json"):
            overwrite(backend.broker, task_id, row.column, row.text)
        return
    before = tasks.add.enqueue(1, 2)
    task_id = plant(backend, row, marker)
    after = tasks.add.enqueue(3, 4)

    with capture(task_started) as started:
        drain()

    stored = backend.broker.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("FAILED", 1)  # not retried: it can never run
    [error] = stored.errors
    assert error.exception_class_path == "tandem.exceptions.TaskNotRunnable"
    _, _, message = error.traceback.rstrip().rpartition("tandem.exceptions.TaskNotRunnable: ")
    if row.column is not None and not is_json(row.text) and refuses_updates(backend):
        # MariaDB refuses to update the row at all: it is failed in the claim, its text kept.
        assert message.startswith("The stored row could not be claimed: the database refused")
        assert message.endswith(f"(kept as a JSON string); {TAMPERED}")
        assert getattr(stored, row.column) == row.text
    else:
        assert message == row.message
    assert task_id not in {event["id"] for event in started}
    assert not marker.exists()
    assert not Ledger.objects.exists()
    for good in (before, after):  # claimed in the same batch as the bad row
        good.refresh()
        assert good.status == TaskResultStatus.SUCCESSFUL


def test_a_corrupt_value_is_read_as_its_text_and_why(backend: TandemBackend) -> None:
    task_id = store_row(backend, "tests.tasks.ledger")
    if holds_only_json(backend):
        with pytest.raises(DatabaseError, match="invalid input syntax for type json"):
            overwrite(backend.broker, task_id, "args", "[1, 2")
        return
    overwrite(backend.broker, task_id, "args", "[1, 2")

    stored = backend.broker.get(task_id)
    assert stored is not None
    assert isinstance(stored.args, Unreadable)
    assert (str(stored.args), stored.args.reason) == ("[1, 2", reason_of("[1, 2"))


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_row_whose_arguments_do_not_parse_fails_the_same_in_every_pool(
    backend: TandemBackend, drain: Any, settings: Any, tmp_path: Path, executor: str
) -> None:
    """Its unparsed arguments (``Unreadable``) cross to a process's child or a subinterpreter
    pickled, and must arrive whole, to be refused there, not crash the attempt."""
    if holds_only_json(backend) or refuses_updates(backend):
        pytest.skip("this store refuses the corrupt text itself (see the test above)")
    configured = {k: dict(v) for k, v in settings.TASKS.items()}
    options = dict(configured["default"].get("OPTIONS", {}))
    configured["default"]["OPTIONS"] = {**options, "pools": pool(executor, workers=1)}
    settings.TASKS = configured
    from django.tasks import task_backends

    backend = task_backends["default"]  # type: ignore[assignment]
    [row] = [r for r in ROWS if r.name == "args: not JSON"]
    task_id = plant(backend, row, tmp_path / "ran")
    drain()
    stored = backend.broker.get(task_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("FAILED", 1)
    [error] = stored.errors
    assert error.exception_class_path == "tandem.exceptions.TaskNotRunnable", error.traceback
    assert error.traceback.rstrip().endswith(row.message)

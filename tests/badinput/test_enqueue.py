"""The enqueue corpus: arguments, payload size, ``run_after``, priority and queue, on each store.

Every refused enqueue raises before anything is stored and sends no ``task_enqueued``; every
accepted odd value round-trips through the store unchanged.

The same rules are checked from other angles elsewhere: Django's validation messages in
tests/conformance/test_validation.py, the JSON check's wording in tests/unit/test_serialization.py,
``enqueue_many`` storing nothing for a non-JSON item in tests/features/test_unique_and_bulk.py.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.tasks import TaskResultStatus
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued

import tandem
from tandem.backends.base import TandemBackend
from tandem.conf import DEFAULT_MAX_PAYLOAD_BYTES
from tandem.serialization import NotJSONError, PayloadTooLarge
from tests import tasks
from tests.support.conformance import capture, stored_count

JSON_ONLY = (
    "; task data must be JSON (str, int, float, bool, None, list, dict). Pass an id or an ISO "
    "string instead, and load or parse it inside the task."
)
PRIORITY = "priority must be a whole number between -100 and 100."

pytestmark = pytest.mark.django_db(transaction=True)  # pool threads use their own connections

# -- arguments that are not JSON -----------------------------------------------------------------

NOT_JSON = [
    # (args, kwargs, the exact start of the message)
    ([object()], {}, "args[0] is a builtins.object"),
    ([datetime(2030, 1, 1, tzinfo=UTC)], {}, "args[0] is a datetime.datetime"),
    ([], {"amount": Decimal("1.5")}, "kwargs['amount'] is a decimal.Decimal"),
    ([{1, 2}], {}, "args[0] is a builtins.set"),
    ([b"\xff\xfe"], {}, "args[0] is bytes that are not UTF-8"),
    ([math.nan], {}, "args[0] is nan (not allowed in JSON)"),
    ([], {"limit": math.inf}, "kwargs['limit'] is inf (not allowed in JSON)"),
    ([{(1, 2): "point"}], {}, "args[0] has a key of type tuple ((1, 2))"),
    ([{1: "a", "1": "b"}], {}, "args[0] has the keys 1 and '1', which are the same key in JSON"),
    ([[1, [2, [lambda: 3]]]], {}, "args[0][1][1][0] is a builtins.function"),
    ([], {"user": {"when": timedelta(1)}}, "kwargs['user']['when'] is a datetime.timedelta"),
]


@pytest.mark.parametrize(("args", "kwargs", "problem"), NOT_JSON, ids=[p for *_, p in NOT_JSON])
def test_arguments_that_are_not_json_are_refused(
    backend: TandemBackend, args: list[Any], kwargs: dict[str, Any], problem: str
) -> None:
    with capture(task_enqueued) as sent, pytest.raises(NotJSONError) as caught:
        tasks.echo.enqueue(*args, **kwargs)
    assert str(caught.value) == problem + JSON_ONLY
    with pytest.raises(NotJSONError):
        tandem.enqueue_many(tasks.echo, [([1], {}), (args, kwargs)])
    with pytest.raises(NotJSONError):
        async_to_sync(tasks.echo.aenqueue)(*args, **kwargs)
    assert (stored_count(backend), sent) == (0, [])


# -- the maximum payload -------------------------------------------------------------------------


def payload_message(size: int, limit: int) -> str:
    return (
        f"The arguments of task 'tests.tasks.echo' take {size:,} bytes as JSON, more than the "
        f"{limit:,} that TASKS['default']['OPTIONS']['max_payload_bytes'] allows. Store large "
        "data elsewhere (a file, a row) and pass its id, or raise the limit (None: no limit)."
    )


def text_of_payload(size: int) -> str:
    """A string argument whose args + kwargs take exactly ``size`` bytes: ``["…"]`` + ``{}``."""
    return "x" * (size - len('[""]') - len("{}"))


def test_the_default_limit_is_one_mebibyte(backend: TandemBackend) -> None:
    assert DEFAULT_MAX_PAYLOAD_BYTES == 1024 * 1024
    assert backend.tandem_options.max_payload_bytes == DEFAULT_MAX_PAYLOAD_BYTES

    at_limit = tasks.echo.enqueue(text_of_payload(DEFAULT_MAX_PAYLOAD_BYTES))
    assert len(backend.get_result(at_limit.id).args[0]) == DEFAULT_MAX_PAYLOAD_BYTES - 6

    with capture(task_enqueued) as sent, pytest.raises(PayloadTooLarge) as caught:
        tasks.echo.enqueue(text_of_payload(DEFAULT_MAX_PAYLOAD_BYTES + 1))
    assert str(caught.value) == payload_message(
        DEFAULT_MAX_PAYLOAD_BYTES + 1, DEFAULT_MAX_PAYLOAD_BYTES
    )
    assert (stored_count(backend), sent) == (1, [])
    assert issubclass(PayloadTooLarge, ValueError)


def test_the_limit_counts_args_and_kwargs_as_stored(options: Any) -> None:
    backend = options(max_payload_bytes=40)
    tasks.echo.enqueue("a" * 10, note="b" * 10)  # ["aaaaaaaaaa"] + {"note": "bbbbbbbbbb"}: 36

    with pytest.raises(PayloadTooLarge) as caught:
        tasks.echo.enqueue("a" * 10, note="b" * 15)
    assert str(caught.value) == payload_message(41, 40)
    # Non-ASCII text is stored escaped: "é" takes 6 bytes ("\u00e9").
    with pytest.raises(PayloadTooLarge) as caught:
        tasks.echo.enqueue("é" * 6)
    assert str(caught.value) == payload_message(len('["' + "\\u00e9" * 6 + '"]{}'), 40)
    assert stored_count(backend) == 1


def test_enqueue_many_and_aenqueue_are_limited_too(options: Any) -> None:
    backend = options(max_payload_bytes=100)
    items = [([str(n)], {}) for n in range(5)] + [([text_of_payload(101)], {})]
    with capture(task_enqueued) as sent, pytest.raises(PayloadTooLarge) as caught:
        tandem.enqueue_many(tasks.echo, items)
    assert str(caught.value) == payload_message(101, 100)
    with pytest.raises(PayloadTooLarge):
        async_to_sync(tasks.echo.aenqueue)(text_of_payload(101))
    assert (stored_count(backend), sent) == (0, [])  # a bad item stores nothing


def test_none_means_no_limit(options: Any) -> None:
    backend = options(max_payload_bytes=None)
    big = text_of_payload(2 * DEFAULT_MAX_PAYLOAD_BYTES)
    result = tasks.echo.enqueue(big)
    assert backend.get_result(result.id).args == [big]


# -- run_after -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_after", "message"),
    [
        (datetime(2030, 1, 1), "run_after must be an aware datetime."),  # naive
        (
            "2030-01-01T00:00:00Z",
            "run_after must be an aware datetime, got '2030-01-01T00:00:00Z'.",
        ),
        (1893456000, "run_after must be an aware datetime, got 1893456000."),
    ],
    ids=["naive", "a string", "a timestamp"],
)
def test_run_after_must_be_an_aware_datetime(
    backend: TandemBackend, run_after: Any, message: str
) -> None:
    with pytest.raises(InvalidTask, match=f"^{re.escape(message)}$"):
        tasks.noop.using(run_after=run_after).enqueue()
    assert stored_count(backend) == 0


@pytest.mark.parametrize(
    "run_after",
    [
        datetime(2000, 1, 1, tzinfo=UTC),  # long past: due at once
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2030, 6, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),  # far future: never due
    ],
    ids=["past", "epoch", "another-offset", "far-future"],
)
def test_odd_run_after_round_trips(backend: TandemBackend, drain: Any, run_after: datetime) -> None:
    result = tasks.add.using(run_after=run_after).enqueue(1, 2)
    stored = backend.get_result(result.id)
    assert stored.task.run_after == run_after
    drain()
    result.refresh()
    due = run_after < datetime.now(UTC)
    assert result.status == (TaskResultStatus.SUCCESSFUL if due else TaskResultStatus.READY)


# -- priority and queue --------------------------------------------------------------------------


@pytest.mark.parametrize("priority", [-101, 101, 10**9, 3.5, True, False, "1", b"1", [1]])
def test_priority_out_of_range_or_not_a_number_is_refused(
    backend: TandemBackend, priority: Any
) -> None:
    with pytest.raises(InvalidTask, match=f"^{re.escape(PRIORITY)}$"):
        tasks.noop.using(priority=priority).enqueue()
    assert stored_count(backend) == 0


def test_a_whole_float_priority_is_stored_as_an_int(backend: TandemBackend) -> None:
    # Django accepts 2.0 ("a whole number"); the store must read it back as 2.
    result = tasks.noop.using(priority=2.0).enqueue()  # type: ignore[arg-type]
    stored = backend.get_result(result.id)
    assert stored.task.priority == 2
    assert type(stored.task.priority) is int


@pytest.mark.parametrize("queue_name", ["nope", "", "DEFAULT", "default "])
def test_an_unknown_queue_is_refused(backend: TandemBackend, queue_name: str) -> None:
    with pytest.raises(InvalidTask, match=f"^Queue '{re.escape(queue_name)}' is not valid"):
        tasks.noop.using(queue_name=queue_name).enqueue()
    assert stored_count(backend) == 0

"""The concurrency-limit corpus: bad ``concurrency_key`` / ``concurrency_limit`` / ``on_limit``
at declaration, and key callables that raise or answer something that is not a key at enqueue.
Every refusal names the problem and stores nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued

import tandem
from tandem.backends.base import TandemBackend
from tests.support.conformance import capture, stored_count

pytestmark = pytest.mark.django_db


def charge(account: str, amount: int = 0) -> str:
    return account


class KeyTrouble(Exception):
    pass


def key_that_raises(account: str, amount: int = 0) -> str:
    raise KeyTrouble(f"no key for {account}")


by_account = tandem.task(concurrency_key=lambda account, amount=0: f"acct:{account}")(charge)
raising_key = tandem.task(concurrency_key=key_that_raises)(charge)


def declare(**extras: Any) -> Any:
    return tandem.task(**extras)(charge)


@pytest.mark.parametrize("value", [0, -1, True, "3", 1.5])
def test_a_limit_that_is_not_a_whole_number_above_zero_is_refused(value: object) -> None:
    message = f"concurrency_limit must be an integer >= 1, got {value!r}."
    with pytest.raises(InvalidTask, match=f"^{re.escape(message)}$"):
        declare(concurrency_key="k", concurrency_limit=value)


@pytest.mark.parametrize("value", ["drop", "WAIT", "", None, 1])
def test_on_limit_other_than_wait_or_discard_is_refused(value: object) -> None:
    message = f"on_limit must be 'wait' or 'discard', got {value!r}."
    with pytest.raises(InvalidTask, match=f"^{re.escape(message)}$"):
        declare(concurrency_key="k", on_limit=value)


@pytest.mark.parametrize("value", ["", 7, b"acct", ["k"], "k" * 256])
def test_a_key_that_is_not_a_short_string_or_a_callable_is_refused(value: object) -> None:
    with pytest.raises(InvalidTask) as raised:
        declare(concurrency_key=value)
    assert str(raised.value).startswith("concurrency_key must be a non-empty str of at most 255")
    assert str(raised.value).endswith(f"got {value!r}.")


@pytest.mark.parametrize(
    ("extras", "named"),
    [({"concurrency_limit": 2}, "concurrency_limit"), ({"on_limit": "discard"}, "on_limit")],
)
def test_a_limit_without_a_key_is_refused(extras: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidTask, match=f"^{named} needs a concurrency_key"):
        declare(**extras)


def test_a_good_declaration_is_accepted() -> None:
    task = declare(concurrency_key="k", concurrency_limit=3, on_limit="discard")
    assert (task.concurrency_key, task.concurrency_limit, task.on_limit) == ("k", 3, "discard")
    assert declare(concurrency_key="k").concurrency_limit is None  # 1 when stored


def test_a_key_callable_that_raises_raises_to_the_caller(backend: TandemBackend) -> None:
    with capture(task_enqueued) as sent, pytest.raises(KeyTrouble, match="no key for a-1"):
        raising_key.enqueue("a-1")

    assert stored_count(backend) == 0
    assert sent == []


@pytest.mark.parametrize("answer", [7, None, "", "k" * 256, ["k"]])
def test_a_key_callable_that_answers_no_key_is_refused(
    backend: TandemBackend, answer: object
) -> None:
    task = tandem.task(concurrency_key=lambda account, amount=0: answer)(charge)

    with pytest.raises(InvalidTask) as raised:
        task.enqueue("a-1")

    message = str(raised.value)
    assert message.startswith(
        "concurrency_key of tests.badinput.test_concurrency_limits.charge must return a "
        "non-empty str of at most 255 characters"
    )
    assert message.endswith(f"got {answer!r}.")
    assert stored_count(backend) == 0


def test_a_key_callable_is_called_with_the_arguments(backend: TandemBackend) -> None:
    result = by_account.enqueue("a-1", amount=5)

    stored = backend.broker.get(result.id)
    assert stored is not None
    assert (stored.concurrency_key, stored.concurrency_limit, stored.on_limit) == (
        "acct:a-1",
        1,
        "wait",
    )

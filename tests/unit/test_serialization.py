"""Task data is JSON: what cannot be stored is refused with the path of the offending part."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import uuid

import pytest

from tandem.serialization import (
    NotJSONError,
    arguments_to_json,
    plain_json_text,
    to_json,
    to_json_text,
)

ADVICE = (
    "; task data must be JSON (str, int, float, bool, None, list, dict). "
    "Pass an id or an ISO string instead, and load or parse it inside the task."
)


def problem(value, what="args"):
    with pytest.raises(NotJSONError) as caught:
        to_json(value, what)
    message = str(caught.value)
    assert message.endswith(ADVICE)
    return message.removesuffix(ADVICE)


def test_the_error_names_the_path_and_the_type():
    when = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

    assert problem([{"when": when}]) == "args[0]['when'] is a datetime.datetime"


@pytest.mark.parametrize(
    ("value", "what", "expected"),
    [
        (
            {"user": {"ids": [1, decimal.Decimal("2")]}},
            "kwargs",
            "kwargs['user']['ids'][1] is a decimal.Decimal",
        ),
        ([uuid.UUID(int=1)], "args", "args[0] is a uuid.UUID"),
        ([[1, [2, {3, 4}]]], "args", "args[0][1][1] is a builtins.set"),
        ({"day": datetime.date(2030, 1, 1)}, "kwargs", "kwargs['day'] is a datetime.date"),
        (object(), "return value", "return value is a builtins.object"),
        ([b"\xff\xfe"], "args", "args[0] is bytes that are not UTF-8"),
        ({(1, 2): "pair"}, "kwargs", "kwargs has a key of type tuple ((1, 2))"),
        ({"a": {b"k": 1}}, "kwargs", "kwargs['a'] has a key of type bytes (b'k')"),
    ],
)
def test_unstorable_values(value, what, expected):
    assert problem(value, what) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([float("nan")], "args[0] is nan (not allowed in JSON)"),
        ([1.0, {"x": float("inf")}], "args[1]['x'] is inf (not allowed in JSON)"),
        ([float("-inf")], "args[0] is -inf (not allowed in JSON)"),
        ([{float("nan"): 1}], "args[0] has the key nan (not allowed in JSON)"),
    ],
)
def test_non_finite_floats_are_refused(value, expected):
    assert problem(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({1: "a", "1": "b"}, "kwargs has the keys 1 and '1', which are the same key in JSON"),
        (
            {True: 1, "true": 2},
            "kwargs has the keys True and 'true', which are the same key in JSON",
        ),
        (
            {None: 1, "null": 2},
            "kwargs has the keys None and 'null', which are the same key in JSON",
        ),
    ],
)
def test_keys_that_would_collide_in_json_are_refused(value, expected):
    # Silently keeping only one of them would lose data.
    assert problem(value, "kwargs") == expected


def test_not_json_error_is_a_type_error():
    assert issubclass(NotJSONError, TypeError)


def test_values_come_back_as_json_reads_them():
    value = {
        "tuple": (1, (2, 3)),
        "nested": [("a", "b")],
        "int_key": {1: "one", 2.5: "two and a half", None: "nothing"},
        "bool_key": {True: "yes", False: "no"},
        "bytes": b"caf\xc3\xa9",
        "plain": ["x", 1, 1.5, None, False],
    }

    assert to_json(value, "kwargs") == {
        "tuple": [1, [2, 3]],
        "nested": [["a", "b"]],
        "int_key": {"1": "one", "2.5": "two and a half", "null": "nothing"},
        "bool_key": {"true": "yes", "false": "no"},
        "bytes": "café",
        "plain": ["x", 1, 1.5, None, False],
    }


def test_to_json_returns_a_copy():
    original = {"items": [1, 2]}

    stored = to_json(original, "kwargs")
    stored["items"].append(3)

    assert original == {"items": [1, 2]}


def test_arguments_to_json():
    args, kwargs = arguments_to_json((1, (2, 3)), {"key": ("a",)})

    assert args == [1, [2, 3]]
    assert kwargs == {"key": ["a"]}


def test_arguments_to_json_names_args_and_kwargs():
    with pytest.raises(NotJSONError, match=r"^kwargs\['when'\] is a datetime\.datetime;"):
        arguments_to_json([], {"when": datetime.datetime(2030, 1, 1)})
    with pytest.raises(NotJSONError, match=r"^args\[2\] is a builtins\.frozenset;"):
        arguments_to_json([1, 2, frozenset()], {})


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        [],
        {},
        [1, -2, 10**30, 1.5, -0.0, 1e16, True, False, None, "x", 'é\n"', ""],
        {"id": 7, "name": "ä", "ratio": 0.1, "flag": True, "none": None},
    ],
)
def test_plain_values_are_written_as_to_json_text_writes_them_and_read_back_equal(value):
    text = plain_json_text(value)
    assert text == to_json_text(value, "args")
    read_back = json.loads(text)
    assert read_back == value
    assert [type(v) for v in (read_back.values() if isinstance(value, dict) else read_back)] == [
        type(v) for v in (value.values() if isinstance(value, dict) else value)
    ]


@pytest.mark.parametrize(
    "value",
    [
        [(1, 2)],  # nested: read back as a list
        [[1]],
        [{"a": 1}],
        [Colour.RED],  # a subclass: written as its base type
        [float("nan")],  # refused by to_json_text, with its message
        [float("inf")],
        [b"x"],
        [datetime.date(2030, 1, 1)],
        {1: "x"},  # keys become strings
    ],
)
def test_anything_else_is_left_to_to_json_text(value):
    assert plain_json_text(value) is None


def test_an_enqueue_keeps_plain_arguments_and_converts_the_rest(settings):
    from django.tasks import task_backends

    backend = task_backends["default"]
    from tests import tasks

    new = backend._new_task(tasks.add, (1, 2), {"note": "x", "when": None})
    assert (new.args, new.kwargs) == ([1, 2], {"note": "x", "when": None})
    assert new.json_args() == ("[1, 2]", '{"note": "x", "when": null}')
    converted = backend._new_task(tasks.add, ((1, 2), Colour.RED), {})
    assert converted.args == [[1, 2], 1]
    assert type(converted.args[1]) is int
    with pytest.raises(NotJSONError, match=r"args\[0\] is nan"):
        backend._new_task(tasks.add, (float("nan"), 1), {})

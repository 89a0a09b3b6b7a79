"""JSON-only task data: arguments and return values are checked and normalised, never pickled."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils.json import normalize_json


class NotJSONError(TypeError):
    """A value that must be stored as JSON cannot be."""


class PayloadTooLarge(ValueError):
    """A task's arguments take more bytes of JSON than ``OPTIONS["max_payload_bytes"]`` allows."""


def payload_bytes(args: Any, kwargs: Any) -> int:
    """How many bytes of JSON ``args`` and ``kwargs`` take in the store (ASCII, as written)."""
    return len(json.dumps(args)) + len(json.dumps(kwargs))


def _find_problem(value: Any, path: str) -> str | None:
    """The path and type of the first part of ``value`` that JSON cannot hold."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r} (not allowed in JSON)"
    if isinstance(value, bytes):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return f"{path} is bytes that are not UTF-8"
        return None
    if isinstance(value, Mapping):
        json_keys: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path} has a key of type {type(key).__qualname__} ({key!r})"
            if isinstance(key, float) and not math.isfinite(key):
                return f"{path} has the key {key!r} (not allowed in JSON)"
            # JSON keys are strings: 1 and "1" (or True and "true") would silently become one.
            json_key = key if isinstance(key, str) else json.dumps(key)
            if json_key in json_keys:
                return (
                    f"{path} has the keys {json_keys[json_key]!r} and {key!r}, "
                    "which are the same key in JSON"
                )
            json_keys[json_key] = key
            found = _find_problem(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, Sequence):
        for index, item in enumerate(value):
            found = _find_problem(item, f"{path}[{index}]")
            if found:
                return found
        return None
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return f"{path} is a {kind}"


def to_json(value: Any, what: str) -> Any:
    """``value`` as it will be stored and read back (tuples become lists, keys strings).

    Raises ``NotJSONError`` naming the offending part, e.g. ``args[0]['when'] is a
    datetime.datetime``.
    """
    return json.loads(to_json_text(value, what))


def to_json_text(value: Any, what: str) -> str:
    """``value`` as the JSON text stored for it (``to_json()`` is this text read back)."""
    problem = _find_problem(value, what)
    if problem is not None:
        raise NotJSONError(
            f"{problem}; task data must be JSON (str, int, float, bool, None, list, dict). "
            "Pass an id or an ISO string instead, and load or parse it inside the task."
        )
    return json.dumps(normalize_json(value), allow_nan=False)


#: The types whose JSON text reads back as an equal value of the same type (and float, when
#: finite).
_PLAIN = frozenset({str, int, bool, type(None)})


def plain_json_text(value: list[Any] | dict[str, Any]) -> str | None:
    """``value``'s JSON text (as ``to_json_text`` writes it) when it is a list, or a dict with
    string keys, of plain scalars — ``str``, ``int``, ``bool``, ``None`` or a finite ``float``,
    exactly those types, not subclasses; otherwise None.

    Such a value needs none of ``to_json_text``'s checks, and its text reads back as an equal
    value, so the caller can keep ``value`` instead of reading the text back: the common
    arguments of an enqueue (an id, a name, a flag) skip two walks and a ``json.loads``.
    """
    if type(value) is dict:
        if any(type(key) is not str for key in value):
            return None
        items: Any = value.values()
    else:
        items = value
    for item in items:
        kind = type(item)
        if kind not in _PLAIN and (kind is not float or not math.isfinite(item)):
            return None
    return json.dumps(value, allow_nan=False)


def stored_json[T: (list[Any], dict[str, Any])](value: T, what: str) -> tuple[str, T]:
    """``value`` (a fresh list or dict) as stored: its JSON text and that text read back. Plain
    values (``plain_json_text``) read back as themselves, so they are kept, not read back."""
    text = plain_json_text(value)
    if text is not None:
        return text, value
    text = to_json_text(value, what)
    read_back: T = json.loads(text)
    return text, read_back


def arguments_to_json(
    args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    return to_json(list(args), "args"), to_json(dict(kwargs), "kwargs")

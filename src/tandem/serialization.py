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


#: The scalar types ``json.dumps`` writes as they are (exactly these types, not subclasses).
_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})
#: What ``_read_back`` answers for a value that is not plain.
_NOT_PLAIN: Any = object()


def _read_back(value: Any) -> Any:
    """``value`` as ``json.loads(json.dumps(value))`` would give it back (new lists and dicts,
    tuples as lists), when it is built only of exact ``str``, ``int``, ``bool``, ``None``,
    finite ``float``, ``list``, ``tuple`` and ``dict`` with ``str`` keys; else ``_NOT_PLAIN``.

    For such a value ``normalize_json`` changes nothing ``json.dumps`` would write and
    ``_find_problem`` finds nothing, so ``to_json_text`` skips both (the common case, checked in
    a fraction of their time), and an enqueue need not parse the text it just wrote.
    """
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return value
    if kind is float:
        return value if math.isfinite(value) else _NOT_PLAIN
    if kind is dict:
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                return _NOT_PLAIN
            item = _read_back(item)
            if item is _NOT_PLAIN:
                return _NOT_PLAIN
            copy[key] = item
        return copy
    if kind is list or kind is tuple:
        items: list[Any] = []
        for item in value:
            item = _read_back(item)
            if item is _NOT_PLAIN:
                return _NOT_PLAIN
            items.append(item)
        return items
    return _NOT_PLAIN


def to_json(value: Any, what: str) -> Any:
    """``value`` as it will be stored and read back (tuples become lists, keys strings).

    Raises ``NotJSONError`` naming the offending part, e.g. ``args[0]['when'] is a
    datetime.datetime``.
    """
    return json.loads(to_json_text(value, what))


def to_json_text(value: Any, what: str) -> str:
    """``value`` as the JSON text stored for it (``to_json()`` is this text read back)."""
    if _read_back(value) is not _NOT_PLAIN:
        return json.dumps(value)
    problem = _find_problem(value, what)
    if problem is not None:
        raise NotJSONError(
            f"{problem}; task data must be JSON (str, int, float, bool, None, list, dict). "
            "Pass an id or an ISO string instead, and load or parse it inside the task."
        )
    return json.dumps(normalize_json(value), allow_nan=False)


def to_json_and_text(value: Any, what: str) -> tuple[Any, str]:
    """``to_json(value, what)`` and ``to_json_text(value, what)``, making the text once (and,
    for a plain value, not parsing it back)."""
    read_back = _read_back(value)
    if read_back is not _NOT_PLAIN:
        return read_back, json.dumps(value)
    text = to_json_text(value, what)
    return json.loads(text), text


def arguments_to_json(
    args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    return to_json(list(args), "args"), to_json(dict(kwargs), "kwargs")

"""``StoredTask`` and ``Outcome`` as tuples of shareable values, for a subinterpreter's queues.

An ``interpreters`` queue passes None, bool, int, float, str, bytes and tuples of those as they
are; anything else is pickled and rebuilt in the other interpreter, which for these frozen
dataclasses (a class looked up, every field set one by one) cost about 20 µs a task each way.
``encode`` turns one into a tuple of shareable values, field by field in declaration order:
aware UTC datetimes as integer microseconds since the epoch, errors as ``(path, traceback)``
pairs, JSON-like values (arguments, return value, progress) with each list, dict or tuple as a
tuple headed by its kind. A value that has no exact encoding here (a datetime in another zone, a
subclass of str, any other object) makes ``encode`` return the object itself, which the queue
pickles as before: ``decode(encode(x)) == x`` always, with the same types.
"""

from __future__ import annotations

import operator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from tandem.brokers.base import ErrorRecord, StoredTask
from tandem.execution import Outcome

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_PLAIN = (str, int, float, bool, type(None))

# How each field crosses, from its annotation (``from __future__ import annotations``: text).
_AS_IS, _DATETIME, _STRINGS, _ERRORS, _ERROR, _ANY = range(6)
_LIST, _DICT, _TUPLE = range(3)  # the kind of container an encoded tuple holds
_KINDS = {
    "str": _AS_IS,
    "int": _AS_IS,
    "bool": _AS_IS,
    "str | None": _AS_IS,
    "int | None": _AS_IS,
    "float | None": _AS_IS,
    "datetime": _DATETIME,
    "datetime | None": _DATETIME,
    "tuple[str, ...]": _STRINGS,
    "tuple[ErrorRecord, ...]": _ERRORS,
    "ErrorRecord | None": _ERROR,
}


class _Inexact(Exception):
    """A value with no exact shareable encoding: the object crosses pickled, whole."""


class _Schema:
    """A dataclass's fields, and which of them need converting, by kind."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.names = tuple(f.name for f in fields(cls))
        kinds = [_KINDS.get(str(f.type), _ANY) for f in fields(cls)]
        self.values = operator.attrgetter(*self.names)
        self.plain = tuple(i for i, kind in enumerate(kinds) if kind == _AS_IS)
        self.converted = tuple((i, kind) for i, kind in enumerate(kinds) if kind != _AS_IS)


_SCHEMAS: dict[type, _Schema] = {cls: _Schema(cls) for cls in (StoredTask, Outcome)}
_BY_NAME: dict[str, _Schema] = {cls.__name__: schema for cls, schema in _SCHEMAS.items()}


def _encode_value(kind: int, value: Any) -> Any:
    if kind == _DATETIME:
        if value is None:
            return None
        if type(value) is datetime and value.tzinfo is UTC and not value.fold:
            return (value - _EPOCH) // _MICROSECOND
    elif kind == _STRINGS:
        if type(value) is tuple and all(type(item) is str for item in value):
            return value
    elif kind == _ERRORS:
        if type(value) is tuple:
            return tuple(_encode_value(_ERROR, error) for error in value)
    elif kind == _ERROR:
        if value is None:
            return None
        if (
            type(value) is ErrorRecord
            and type(value.exception_class_path) is str
            and type(value.traceback) is str
        ):
            return (value.exception_class_path, value.traceback)
    else:  # _ANY
        return _encode_data(value)
    raise _Inexact


def _decode_value(kind: int, value: Any) -> Any:
    if kind == _STRINGS or value is None:
        return value
    if kind == _DATETIME:
        return _EPOCH + value * _MICROSECOND
    if kind == _ERRORS:
        return tuple(ErrorRecord(exception_class_path=p, traceback=t) for p, t in value)
    if kind == _ERROR:
        return ErrorRecord(exception_class_path=value[0], traceback=value[1])
    return _decode_data(value)


def _encode_data(value: Any) -> Any:
    """A JSON-like value (None, bool, int, float, str, and lists, dicts and tuples of them) as
    shareable values: a container as a tuple headed by its kind, the rest as it is."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list:
        return (_LIST, *[_encode_data(item) for item in value])
    if kind is dict:
        encoded: list[Any] = [_DICT]
        for key, item in value.items():
            encoded.append(_encode_data(key))
            encoded.append(_encode_data(item))
        return tuple(encoded)
    if kind is tuple:
        return (_TUPLE, *[_encode_data(item) for item in value])
    raise _Inexact


def _decode_data(value: Any) -> Any:
    if type(value) is not tuple:
        return value
    kind = value[0]
    if kind == _LIST:
        return [_decode_data(item) for item in value[1:]]
    if kind == _DICT:
        return {_decode_data(value[i]): _decode_data(value[i + 1]) for i in range(1, len(value), 2)}
    return tuple(_decode_data(item) for item in value[1:])


def encode(item: StoredTask | Outcome) -> Any:
    """``item`` (a ``StoredTask`` or an ``Outcome``) as a tuple of shareable values, headed by
    its kind; or ``item`` itself when one of its values has no exact encoding."""
    schema = _SCHEMAS[type(item)]
    values = [schema.cls.__name__, *schema.values(item)]
    try:
        for i in schema.plain:
            if type(values[i + 1]) not in _PLAIN:
                raise _Inexact
        for i, kind in schema.converted:
            values[i + 1] = _encode_value(kind, values[i + 1])
    except (_Inexact, RecursionError):
        return item
    return tuple(values)


def decode(encoded: Any) -> Any:
    """The ``StoredTask`` or ``Outcome`` that ``encode`` gave ``encoded`` for."""
    if not isinstance(encoded, tuple):
        return encoded
    schema = _BY_NAME[encoded[0]]
    values = list(encoded[1:])
    if len(values) != len(schema.names):
        raise ValueError(f"{len(values)} values for the {len(schema.names)} fields")
    for i, kind in schema.converted:
        values[i] = _decode_value(kind, values[i])
    return schema.cls(**dict(zip(schema.names, values, strict=True)))

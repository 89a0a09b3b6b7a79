"""Reading typed values out of a settings mapping: every error names the full settings key and
the value received, and an unknown key is reported with the allowed key it is probably a typo
of."""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from tandem.conf.defaults import EXECUTORS, SUBINTERPRETERS_AVAILABLE
from tandem.rates import InvalidRate
from tandem.rates import normalize as normalize_rate


def unknown_keys(unknown: list[Any], allowed: frozenset[str]) -> list[str]:
    """Each unknown key quoted, with the allowed key it is probably a typo of:
    ``'wrokers' (did you mean 'workers'?)``."""
    shown = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if not close:
            close = [name for name in allowed if name.lower() == str(key).lower()]
        shown.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return shown


class SettingsReader:
    """Reads typed values out of a settings mapping, naming the full key on error."""

    def __init__(self, mapping: Mapping[str, Any], prefix: str, allowed: frozenset[str]) -> None:
        if not isinstance(mapping, Mapping):
            raise ImproperlyConfigured(f"{prefix} must be a dict, got {mapping!r}.")
        unknown = sorted(set(mapping) - allowed, key=str)
        if unknown:
            raise ImproperlyConfigured(
                f"{prefix} has unknown key(s) {', '.join(unknown_keys(unknown, allowed))}; "
                f"allowed: {', '.join(sorted(allowed))}."
            )
        self.mapping = mapping
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}[{name!r}]"

    def integer(self, name: str, default: int, minimum: int) -> int:
        value = self.mapping.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ImproperlyConfigured(
                f"{self.key(name)} must be an integer >= {minimum}, got {value!r}."
            )
        return value

    def number(self, name: str, default: float) -> float:
        value = self.mapping.get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ImproperlyConfigured(
                f"{self.key(name)} must be a finite number > 0, got {value!r}."
            )
        return float(value)

    def rate(self, name: str) -> str | None:
        """A rate string (``"N/s"``, ``"N/m"``, ``"N/h"``), normalized; None when unset."""
        value = self.mapping.get(name)
        if value is None:
            return None
        try:
            return normalize_rate(value)
        except InvalidRate as exc:
            raise ImproperlyConfigured(f"{self.key(name)} {exc}") from None

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.mapping.get(name, default)
        if value not in choices:
            raise ImproperlyConfigured(
                f"{self.key(name)} must be one of {', '.join(map(repr, choices))}, got {value!r}."
            )
        return str(value)

    def executor(self, default: str, blocker: str | None = None) -> str:
        value = self.choice("executor", default, EXECUTORS)
        if value == "subinterpreter" and blocker and "executor" in self.mapping:
            raise ImproperlyConfigured(
                f"{self.key('executor')} is 'subinterpreter', but {blocker}; use 'thread' or "
                "'process' (or leave it unset)."
            )
        if value == "subinterpreter" and not SUBINTERPRETERS_AVAILABLE:
            raise ImproperlyConfigured(
                f"{self.key('executor')} is 'subinterpreter', which needs Python >= 3.14 (this "
                f"is {sys.version.split()[0]}); use 'thread' or 'process', or leave it unset to "
                "get the best available."
            )
        return value

    def optional_number(self, name: str) -> float | None:
        if self.mapping.get(name) is None:
            return None
        return self.number(name, 0)

    def optional_integer(self, name: str, minimum: int) -> int | None:
        if self.mapping.get(name) is None:
            return None
        return self.integer(name, minimum, minimum)

    def text(self, name: str, default: str) -> str:
        value = self.mapping.get(name, default)
        if not isinstance(value, str) or not value:
            raise ImproperlyConfigured(
                f"{self.key(name)} must be a non-empty string, got {value!r}."
            )
        return value

    def optional_text(self, name: str) -> str | None:
        if self.mapping.get(name) is None:
            return None
        return self.text(name, "")

    def flag(self, name: str, default: bool) -> bool:
        value = self.mapping.get(name, default)
        if not isinstance(value, bool):
            raise ImproperlyConfigured(f"{self.key(name)} must be True or False, got {value!r}.")
        return value


__all__ = ["SettingsReader", "unknown_keys"]

"""Plain JSON values read back (a cached summary, a record's ``record.json``), each checked to
have the shape it must have.

A saved file may be damaged or edited by hand: each check raises a TypeError that names the
part and what it holds instead, which the reader turns into one line about that record. These
are the only such checks, for :mod:`lab.measure`'s own objects and for :mod:`lab.records`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    """A part that must be a JSON object."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be an object, not {type(value).__name__}")
    return value


def mapping_or_none(value: Any, what: str) -> dict[str, Any] | None:
    return None if value is None else dict(mapping(value, what))


def sequence(value: Any, what: str) -> Sequence[Any]:
    """A part that must be a JSON list (a tuple where it was never through JSON)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{what} must be a list, not {type(value).__name__}")
    return value


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be text, not {type(value).__name__}")
    return value


def number(value: Any, what: str) -> float:
    """A figure: null (JSON has no NaN) reads as NaN; a bool is not a number, whatever Python says."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {value!r}")
    return value

"""Knobs: one declaration per setting, from which validation, the CLI and the widgets derive.

A configuration class (``ServerConfig``, ``LoadSpec``) declares each field with :func:`knob`.
The metadata stored there -- help text, allowed range or choices, unit, CLI flag, where a
change takes effect -- is the single definition of that knob. ``validate`` checks an
instance against it, ``add_arguments``/``from_arguments`` build and read argparse flags, and
the notebook panel builds its widgets from the same metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from lab.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# A configuration class (ServerConfig, LoadSpec): the constructors below return its own type.
Config = TypeVar("Config", bound="DataclassInstance")


@dataclass(frozen=True, kw_only=True)
class Knob:
    """What a user needs to know about one setting."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    unit: str = ""
    flag: str | None = None  # CLI flag; None means the field is not on the CLI
    short_flag: str | None = None  # a one-letter alias users know from other tools (wrk's -c)
    metavar: str | None = None
    # Where a running program takes a change to this knob, in the terms of the layer that owns
    # the config class (the server's: a Where or a SocketOption of lab/http/knobs.py, from
    # which applying, reading back and documenting the knob are generated); None: not said.
    applies: Any = None
    group: str = "general"  # for grouping widgets and --help sections
    label: str | None = None  # words for the widget when the name's own words read badly
    # What None means, where the knob accepts it, in the words help, messages and widgets show
    # ("kernel default" for a socket option that is then not written).
    none_label: str = "none"
    # False: no control in the panel's forms (the target comes from the panel's path box, where
    # its server listens is fixed while it runs, the rarer load settings are set in code)
    widget: bool = True


def knob(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
         **metadata: Any) -> Any:
    """Declare a dataclass field together with its :class:`Knob` description."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"knob": Knob(**metadata)})


def knobs(config_class: type) -> list[tuple[dataclasses.Field[Any], Knob]]:
    """The fields of a configuration class that are knobs, in declaration order."""
    return [(f, f.metadata["knob"]) for f in dataclasses.fields(config_class) if "knob" in f.metadata]


def field_type(config_class: type, name: str) -> tuple[type, bool]:
    """(base type, accepts None) of a field, resolving ``int | None`` style annotations."""
    hints = typing.get_type_hints(config_class)
    annotation = hints[name]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        base = members[0] if len(members) == 1 else object
        return typing.get_origin(base) or base, nullable
    if origin is typing.Literal:
        # A choice among literals (``Literal["uvloop", "asyncio"]``): the flag parses their type;
        # the knob's choices say which values are allowed.
        return type(typing.get_args(annotation)[0]), False
    return origin or annotation, False


def is_text_list(config_class: type, name: str) -> bool:
    """True for a ``tuple[str, ...]`` field (thresholds, paths): a list of words."""
    annotation = typing.get_type_hints(config_class)[name]
    return typing.get_origin(annotation) is tuple and typing.get_args(annotation) == (str, Ellipsis)


# A name's unit suffix, dropped from its label when the knob's unit says it already.
_UNIT_SUFFIXES = {"s": "_seconds", "bytes": "_bytes", "ms": "_ms"}


def knob_label(name: str, spec: Knob) -> str:
    """The words a widget shows for a knob, with its unit: ``duration_seconds`` -> ``duration (s)``.

    Derived from the declaration (the name, or ``label`` where the name's words read badly,
    and ``unit``), so no second list of labels can drift from the knobs.
    """
    words = spec.label
    if words is None:
        suffix = _UNIT_SUFFIXES.get(spec.unit)
        stem = name.removesuffix(suffix) if suffix and name != suffix.lstrip("_") else name
        words = stem.replace("_", " ")
    return f"{words} ({spec.unit})" if spec.unit else words


def describe_range(spec: Knob, nullable: bool, base: type | None = None) -> str:
    """The allowed values in words a user reads at a glance: ``1 KiB to 64 MiB``, ``on or off``."""
    if base is bool:
        return f"on, off or {spec.none_label}" if nullable else "on or off"
    if spec.choices is not None:
        allowed = "one of " + ", ".join(repr(c) for c in spec.choices)
    else:
        allowed = _bounds(spec)
    if nullable:
        allowed += " (or none)"
    return allowed


def _bounds(spec: Knob) -> str:
    # Bytes carry their unit on each bound (1 KiB to 64 MiB); other units are said once.
    def show(value: float) -> str:
        return format_quantity(value, "bytes") if spec.unit == "bytes" else format_quantity(value)
    unit = f" {spec.unit}" if spec.unit and spec.unit != "bytes" else ""
    if spec.minimum is not None and spec.maximum is not None:
        return f"{show(spec.minimum)} to {show(spec.maximum)}{unit}"
    if spec.minimum is not None:
        return f"at least {show(spec.minimum)}{unit}"
    if spec.maximum is not None:
        return f"at most {show(spec.maximum)}{unit}"
    return "any value"


# Byte sizes are shown in the largest binary unit that divides them exactly.
_BYTE_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def format_quantity(value: float, unit: str = "") -> str:
    """A knob's value with its unit: ``65536`` bytes -> ``64 KiB``, ``1e7`` -> ``10,000,000``."""
    if unit == "bytes" and value == int(value):
        for name, size in _BYTE_UNITS:
            if value >= size and value % size == 0:
                return f"{int(value) // size} {name}"
        return f"{int(value)} bytes"
    number = f"{int(value):,}" if value == int(value) else f"{value:g}"
    return f"{number} {unit}" if unit else number


def format_value(value: Any, spec: Knob) -> str:
    """A knob's current or default value as the help shows it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return spec.none_label
    if isinstance(value, (int, float)):
        return format_quantity(value, spec.unit)
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value) or "none"
    return str(value) or "empty"


def validate(config: Any) -> None:
    """Raise :class:`ConfigError` for the first knob whose value is outside its range."""
    config_class = type(config)
    for field, spec in knobs(config_class):
        value = getattr(config, field.name)
        base, nullable = field_type(config_class, field.name)
        allowed = describe_range(spec, nullable, base)
        if value is None:
            if not nullable:
                raise ConfigError(field.name, f"must not be None; allowed: {allowed}")
            continue
        if base is bool:
            if not isinstance(value, bool):
                raise ConfigError(field.name, f"must be True or False, got {value!r}")
            continue
        if base in (int, float):
            numeric = (int, float) if base is float else (int,)
            if isinstance(value, bool) or not isinstance(value, numeric):
                raise ConfigError(field.name, f"must be {base.__name__}, got {value!r}; allowed: {allowed}")
            # NaN compares false with everything: without its own test it passes any range
            if (isinstance(value, float) and not math.isfinite(value)) or (
                    spec.minimum is not None and value < spec.minimum) or (
                    spec.maximum is not None and value > spec.maximum):
                raise ConfigError(field.name, f"{value!r} is out of range; allowed: {allowed}")
        if spec.choices is not None and value not in spec.choices:
            raise ConfigError(field.name, f"{value!r} is not allowed; allowed: {allowed}")


def changed_knobs(old: Any, new: Any) -> list[str]:
    """Names of the knobs whose values differ between two configurations of one class."""
    return [f.name for f, _ in knobs(type(old)) if getattr(old, f.name) != getattr(new, f.name)]


# --- command line ---------------------------------------------------------------------------

# Suffixes a duration may be written with on the command line (wrk's -d 10s, -d 2m), and a
# millisecond knob (no minutes or hours: no such knob is that long, and "2m" read as 120,000 ms
# would surprise; microseconds for an emulated path's delay=500us).
_SECONDS_PER = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_MILLISECONDS_PER = {"us": 0.001, "ms": 1.0, "s": 1000.0}


class UnreadableValue(ValueError, argparse.ArgumentTypeError):
    """A value that does not parse, and how to write it. argparse prints an ArgumentTypeError's
    own words (a ValueError would read "invalid float value: '5x'", though the help promises
    500ms); callers that catch ValueError still catch it."""


def _parse_optional(base: type, nullable: bool, unit: str) -> Any:
    def parse(text: str) -> Any:
        if nullable and text.lower() in ("none", "off", "default"):
            return None
        if unit == "s" and base is float:
            value = _seconds(text)
        elif unit == "ms" and base is float:
            value = parse_milliseconds(text)
        elif unit == "bytes" and base is int:
            return _bytes(text)
        elif unit == "%" and base is float:
            value = float(text.strip().removesuffix("%"))  # --retry-budget 10%
        else:
            try:
                value = base(text)
            except ValueError:
                whole = "whole " if base is int else ""
                raise UnreadableValue(f"{text!r} is not a {whole}number") from None
        if base is float and not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number")
        return value
    parse.__name__ = base.__name__  # argparse names the type in its error message
    return parse


_TRUE_WORDS = frozenset({"true", "on", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "off", "no", "0"})
_NONE_WORDS = frozenset({"none", "default"})  # a three-state knob's third state (quickack)


def parse_value(config_class: type, name: str, text: str) -> Any:
    """One knob's value written as on the command line (``64KiB``, ``500ms``, ``on``, ``none``).

    For flags that carry a setting by name (``sweep --knob nodelay=on,off``); a ValueError says
    the text does not parse, a range check is still the config class's ``validate``.
    """
    base, nullable = field_type(config_class, name)
    if base is bool:
        word = text.strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        if nullable and word in _NONE_WORDS:
            return None
        also = " or none/default" if nullable else ""
        raise ValueError(f"{text!r} is not on/off (true/false, yes/no, 1/0){also}")
    unit = next(spec.unit for field, spec in knobs(config_class) if field.name == name)
    if base not in (int, float, str):  # a Literal: its choices are words
        base = str
    return _parse_optional(base, nullable, unit)(text.strip())


def parse_seconds(text: str) -> float:
    """A duration as the CLI takes it (``10``, ``10s``, ``500ms``, ``2m``); ValueError if not."""
    return _seconds(text)


def parse_milliseconds(text: str) -> float:
    """``40``, ``40ms``, ``500us``, ``0.5s``: milliseconds (a bare number is already in them);
    ValueError if not."""
    return _scaled(text, _MILLISECONDS_PER, "a time: write it as 40 (ms), 500us, 40ms or 0.5s")


def _seconds(text: str) -> float:
    """``10``, ``10s``, ``500ms``, ``2m``: seconds."""
    return _scaled(text, _SECONDS_PER, "a duration: write it as 10, 500ms, 10s or 2m")


def _scaled(text: str, per_unit: Mapping[str, float], what: str) -> float:
    """A finite number with an optional unit suffix, in the table's unit (the longest suffix
    first: "ms" before "s"); ``what`` says how to write one when ``text`` is not."""
    stripped = text.strip().lower()
    number, scale = stripped, 1.0
    for suffix in sorted(per_unit, key=len, reverse=True):
        if stripped.endswith(suffix) and suffix != stripped:
            number, scale = stripped.removesuffix(suffix), per_unit[suffix]
            break
    try:
        value = float(number) * scale
    except ValueError:
        raise UnreadableValue(f"{text!r} is not {what}") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


_BYTES_PER = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _bytes(text: str) -> int:
    """``65536``, ``64KiB``, ``64k``, ``1MiB``: bytes (binary multiples)."""
    stripped = text.strip().lower()
    try:
        for suffix in sorted(_BYTES_PER, key=len, reverse=True):
            if stripped.endswith(suffix) and suffix != stripped:
                return int(stripped.removesuffix(suffix).strip()) * _BYTES_PER[suffix]
        return int(stripped)
    except ValueError:
        raise UnreadableValue(f"{text!r} is not a size: write it as 65536, 64KiB or 1MiB") from None


def add_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """Add one flag per knob that declares a ``flag``; defaults stay with the config class.

    A tuple knob (``thresholds``) is a repeatable flag; a bool knob gets ``--x``/``--no-x``.
    """
    groups: dict[str, Any] = {}
    for field, spec in knobs(config_class):
        if spec.flag is None:
            continue
        group = groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        base, nullable = field_type(config_class, field.name)
        flags = [spec.flag] if spec.short_flag is None else [spec.short_flag, spec.flag]
        help_text = f"{spec.help} [{_help_range(spec, nullable, base)}default: {_default_text(field, spec)}]"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        if base is bool:
            group.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        elif base is tuple:
            group.add_argument(*flags, dest=field.name, action="append", default=argparse.SUPPRESS,
                               metavar=spec.metavar, help=help_text)
        else:
            group.add_argument(*flags, dest=field.name, default=argparse.SUPPRESS,
                               type=_parse_optional(base, nullable, spec.unit), metavar=spec.metavar,
                               choices=spec.choices, help=help_text)


def _help_range(spec: Knob, nullable: bool, base: type) -> str:
    """The range part of a flag's help, ending in "; " (empty for free text)."""
    if base in (str, tuple) and spec.choices is None:
        return ""
    allowed = describe_range(spec, nullable, base)
    if spec.unit == "s" and base is float:
        allowed += "; 500ms, 10s, 2m also work"
    elif spec.unit == "bytes":
        allowed += "; 64KiB, 1MiB also work"
    return allowed + "; "


def _default_text(field: dataclasses.Field[Any], spec: Knob) -> str:
    if field.default is not dataclasses.MISSING:
        return format_value(field.default, spec)
    return "see docs"


def from_arguments(config_class: type[Config], namespace: argparse.Namespace, **extra: Any) -> Config:
    """Build a validated configuration from parsed flags; flags not given keep their defaults."""
    names = {f.name for f, _ in knobs(config_class)}
    values = {name: tuple(value) if isinstance(value, list) else value
              for name, value in vars(namespace).items() if name in names}
    values.update(extra)
    return config_class(**values)


def as_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-friendly dict of a configuration (tuples become lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def from_dict(config_class: type[Config], values: Mapping[str, Any]) -> Config:
    """Inverse of :func:`as_dict`; unknown keys are an error that names them."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(unknown[0], f"unknown setting for {config_class.__name__}")
    converted = {}
    hints = typing.get_type_hints(config_class)
    for name, value in values.items():
        if isinstance(value, list) and "tuple" in str(hints[name]).lower():
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        converted[name] = value
    return config_class(**converted)

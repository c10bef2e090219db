"""Knobs: one declaration per setting, from which validation, the CLI and the widgets derive.

A configuration class (``ServerConfig``, ``LoadSpec``) declares each field with :func:`knob`.
The metadata stored there -- help text, allowed range or choices, unit, CLI flag, whether a
change needs a restart -- is the single definition of that knob. ``validate`` checks an
instance against it, ``add_arguments``/``from_arguments`` build and read argparse flags, and
the notebook panel builds its widgets from the same metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    metavar: str | None = None
    restart: bool = False  # True: a running server must re-create its listener to apply it
    group: str = "general"  # for grouping widgets and --help sections


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
    return origin or annotation, False


def describe_range(spec: Knob, nullable: bool) -> str:
    if spec.choices is not None:
        allowed = "one of " + ", ".join(repr(c) for c in spec.choices)
    elif spec.minimum is not None and spec.maximum is not None:
        allowed = f"from {spec.minimum:g} to {spec.maximum:g}"
    elif spec.minimum is not None:
        allowed = f"at least {spec.minimum:g}"
    elif spec.maximum is not None:
        allowed = f"at most {spec.maximum:g}"
    else:
        allowed = "any value"
    if nullable:
        allowed += " (or None)"
    return allowed + (f" {spec.unit}" if spec.unit and spec.choices is None else "")


def validate(config: Any) -> None:
    """Raise :class:`ConfigError` for the first knob whose value is outside its range."""
    config_class = type(config)
    for field, spec in knobs(config_class):
        value = getattr(config, field.name)
        base, nullable = field_type(config_class, field.name)
        allowed = describe_range(spec, nullable)
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
            if (spec.minimum is not None and value < spec.minimum) or (
                    spec.maximum is not None and value > spec.maximum):
                raise ConfigError(field.name, f"{value!r} is out of range; allowed: {allowed}")
        if spec.choices is not None and value not in spec.choices:
            raise ConfigError(field.name, f"{value!r} is not allowed; allowed: {allowed}")


def changed_knobs(old: Any, new: Any) -> list[str]:
    """Names of the knobs whose values differ between two configurations of one class."""
    return [f.name for f, _ in knobs(type(old)) if getattr(old, f.name) != getattr(new, f.name)]


# --- command line ---------------------------------------------------------------------------

def _parse_optional(base: type, nullable: bool) -> Any:
    def parse(text: str) -> Any:
        if nullable and text.lower() in ("none", "off", "default"):
            return None
        return base(text)
    parse.__name__ = base.__name__  # argparse names the type in its error message
    return parse


def add_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """Add one flag per knob that declares a ``flag``; defaults stay with the config class."""
    groups: dict[str, Any] = {}
    for field, spec in knobs(config_class):
        if spec.flag is None:
            continue
        group = groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        base, nullable = field_type(config_class, field.name)
        default_text = field.default if field.default is not dataclasses.MISSING else "see docs"
        help_text = f"{spec.help} [{describe_range(spec, nullable)}; default: {default_text}]"
        if base is bool:
            group.add_argument(spec.flag, dest=field.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(spec.flag, dest=field.name, default=argparse.SUPPRESS,
                               type=_parse_optional(base, nullable), metavar=spec.metavar,
                               choices=spec.choices, help=help_text)


def from_arguments(config_class: type[Config], namespace: argparse.Namespace, **extra: Any) -> Config:
    """Build a validated configuration from parsed flags; flags not given keep their defaults."""
    names = {f.name for f, _ in knobs(config_class)}
    values = {name: value for name, value in vars(namespace).items() if name in names}
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

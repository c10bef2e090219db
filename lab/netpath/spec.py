"""What the emulated path does to each packet: one typed, validated value, also written as text.

``Path(delay_ms=20, loss_percent=0.5)`` and ``Path.parse("delay=20ms loss=0.5%")`` are the
same setting; ``str(path)`` writes it back in the text form (what ``serve --emulate`` takes and
what a record keeps). Every field is a :func:`~lab.options.knob`, so the panel builds its
"network path" widgets from here and nowhere else.

Each figure applies to each direction on its own, as netem's do on one interface: the round
trip is twice the delay, and a loss of 1 % loses about 1 % of the packets either way.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lab.errors import ConfigError, PathError
from lab.options import knob, parse_milliseconds, validate


class Listening(Protocol):
    """Anything with a port on this machine: a lab server handle, a peer."""

    @property
    def port(self) -> int: ...


Target = str | int | tuple[str, int] | Listening  # what Path.to puts a path in front of


class InFront(Protocol):
    """What Path.to returns (lab.netpath.front.PathInFront): a path in front of a server."""

    @property
    def address(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def spec(self) -> Path: ...
    def update(self, spec: Path | str) -> Path: ...
    def stats(self) -> dict[str, Any]: ...
    def stop(self) -> None: ...
    def __enter__(self) -> InFront: ...
    def __exit__(self, *exc_info: object) -> None: ...


# What Path.to calls: lab/netpath/front.py builds on this module (through the emulator), so it
# registers itself here when it loads (lab.netpath loads it) rather than this value importing
# it back.
_start_in_front: Callable[[Path, Target, int | None], InFront] | None = None

GROUP = "network path"
OPTION = "emulate"  # the flag and argument a text path comes from

# token name -> (field, how its value is written); the order is the one str() writes
_TOKENS: dict[str, tuple[str, str]] = {
    "delay": ("delay_ms", "20ms"),
    "jitter": ("jitter_ms", "2ms"),
    "loss": ("loss_percent", "0.5%"),
    "burst": ("loss_burst_packets", "3"),
    "rate": ("rate_mbit", "100mbit"),
    "queue": ("queue_packets", "1000"),
    "reorder": ("reorder_percent", "1%"),
}
PATH_KNOBS: tuple[str, ...] = tuple(_TOKENS)  # the names a sweep varies a path by (delay=...)
ALLOWED_FORM = " ".join(f"{name}={example}" for name, (_, example) in _TOKENS.items())

_MBIT_PER = {"kbit": 0.001, "mbit": 1.0, "gbit": 1000.0}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"


@dataclass(frozen=True, kw_only=True)
class Path:
    """An emulated network path between the client's namespace and the server's."""

    delay_ms: float = knob(0.0, minimum=0, maximum=10_000, unit="ms", group=GROUP,
                           help="one-way delay added in each direction (the RTT is twice it)")
    jitter_ms: float = knob(0.0, minimum=0, maximum=10_000, unit="ms", group=GROUP,
                            help="each packet's delay varies uniformly by up to this much either "
                            "way (as netem's default); packets keep their order")
    loss_percent: float = knob(0.0, minimum=0, maximum=100, unit="%", group=GROUP,
                               help="share of packets dropped in each direction")
    loss_burst_packets: float = knob(
        1.0, minimum=1, maximum=10_000, unit="packets", group=GROUP,
        help="mean length of a run of lost packets (Gilbert model); 1 = independent losses")
    rate_mbit: float | None = knob(None, minimum=0.01, maximum=100_000, unit="Mbit/s",
                                   group=GROUP, help="link rate in each direction (none: as "
                                   "fast as the relay moves packets)")
    queue_packets: int = knob(1000, minimum=1, maximum=1_000_000, unit="packets", group=GROUP,
                              help="packets that may wait for the rate limit; more are dropped "
                              "(drop tail)")
    reorder_percent: float = knob(0.0, minimum=0, maximum=100, unit="%", group=GROUP,
                                  help="share of packets sent at once, skipping the delay, so "
                                  "they overtake the ones before them (as netem's reorder)")

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def parse(cls, text: str) -> Path:
        """``'delay=20ms jitter=2ms loss=0.5% rate=100mbit'``; a bad token is a ConfigError
        naming it and the allowed form."""
        values: dict[str, Any] = {}
        for token in text.replace(",", " ").split():
            name, _, value = token.partition("=")
            if name.lower() not in _TOKENS or not value:
                raise ConfigError(OPTION, f"{token!r} is not understood; write {ALLOWED_FORM} "
                                  "(any of them, in any order)")
            field = _TOKENS[name.lower()][0]
            values[field] = _parse_token(name.lower(), value.strip().lower(), token)
        try:
            return cls(**values)
        except ConfigError as error:  # out of range: named as the user wrote it, not by field
            token_name = next((name for name, (field, _) in _TOKENS.items() if field == error.option),
                              error.option)
            raise ConfigError(OPTION, f"{token_name}: {error.message}") from None

    @classmethod
    def coerce(cls, value: Path | str | None) -> Path | None:
        """A Path from a Path, its text form, or None (no emulated path)."""
        if value is None or isinstance(value, Path):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        raise ConfigError("path", f"expected a Path or text like {ALLOWED_FORM!r}, got {value!r}")

    def with_knob(self, name: str, value: float | int) -> Path:
        """This path with one setting changed, named as in the text form (``delay``, ``loss``)."""
        return self.replace(**{_TOKENS[name][0]: value})

    def replace(self, **changes: Any) -> Path:
        return dataclasses.replace(self, **changes)

    def to(self, target: Target, *, port: int | None = None) -> InFront:
        """Put this path in front of a server on this machine that the lab did not start:
        ``with Path(delay_ms=20).to("127.0.0.1:8000") as front: front.url`` reaches it through
        the path (root or CAP_NET_ADMIN). ``target`` may also be a running peer or server."""
        if _start_in_front is None:
            raise PathError("lab.netpath.front is not loaded; import lab.netpath")
        return _start_in_front(self, target, port)

    @property
    def rtt_ms(self) -> float:
        """The round trip the path adds (without jitter, loss or queueing)."""
        return 2 * self.delay_ms

    def __str__(self) -> str:
        words = [f"delay={_number(self.delay_ms)}ms"]
        if self.jitter_ms:
            words.append(f"jitter={_number(self.jitter_ms)}ms")
        if self.loss_percent:
            words.append(f"loss={_number(self.loss_percent)}%")
            if self.loss_burst_packets != 1:
                words.append(f"burst={_number(self.loss_burst_packets)}")
        if self.rate_mbit is not None:
            words.append(f"rate={_number(self.rate_mbit)}mbit")
            words.append(f"queue={self.queue_packets}")
        if self.reorder_percent:
            words.append(f"reorder={_number(self.reorder_percent)}%")
        return " ".join(words)


def knob_value(name: str, text: str) -> float | int:
    """One path setting's value from its text (``knob_value("delay", "10ms")`` -> 10.0), in
    the field's unit; a ConfigError names the token and the allowed form."""
    return getattr(Path.parse(f"{name}={text}"), _TOKENS[name][0])  # type: ignore[no-any-return]


def knob_text(name: str, value: float | int | None) -> str:
    """A path setting written back with its unit: ("delay", 10.0) -> ``delay=10ms``."""
    unit = {"delay": "ms", "jitter": "ms", "loss": "%", "reorder": "%", "rate": "mbit"}.get(name, "")
    return f"{name}={'none' if value is None else _number(value) + unit}"


def _number(value: float) -> str:
    return f"{value:g}"


def _parse_token(name: str, value: str, token: str) -> float | int:
    """One token's value in the field's unit; a unit that does not fit is the token's error."""
    if name in ("delay", "jitter"):  # written as every millisecond knob is: 20, 20ms, 500us, 0.1s
        number = _milliseconds(value)
    elif name in ("loss", "reorder"):
        number = _with_unit(value, {"%": 1.0}, default="%")
    elif name == "rate":
        number = _with_unit(value, _MBIT_PER, default=None)
    elif name == "queue":
        number = _with_unit(value, {"p": 1.0, "packets": 1.0}, default="p")
        if number is not None and number != int(number):
            number = None
        return int(number) if number is not None else _bad(token, name)
    else:  # burst: a count of packets
        number = _with_unit(value, {"p": 1.0, "packets": 1.0}, default="p")
    return number if number is not None else _bad(token, name)


def _milliseconds(value: str) -> float | None:
    try:
        return parse_milliseconds(value)
    except ValueError:
        return None


def _with_unit(value: str, units: dict[str, float], default: str | None) -> float | None:
    match = re.fullmatch(_NUMBER + r"\s*([a-z%]*)", value)
    if match is None:
        return None
    unit = match.group(2) or default
    if unit not in units:
        return None
    return float(match.group(1)) * units[unit]


def _bad(token: str, name: str) -> Any:
    example = _TOKENS[name][1]
    raise ConfigError(OPTION, f"{token!r} is not understood; write {name}={example} "
                      f"(allowed: {ALLOWED_FORM})")

"""Where each server knob takes effect, and what is generated from saying so.

Every knob of :class:`~lab.http.config.ServerConfig` declares ``applies=``: a :class:`Where`
(the listener, each request, the whole loop, ...) or, for a socket option, a
:class:`SocketOption` that also says how to write the value and read it back. From those
declarations, and nowhere else, come:

- which changes re-create the listener (``restart_knobs``, used by ``reconfigure``);
- the socket writes: what a new connection gets, what a live change writes to the open ones,
  what the listener gets before ``listen`` (``SocketPlan``);
- the ``/sockopts`` read-back (its keys and how each raw value is decoded);
- the table of when a change takes effect in docs/live.md and the README (``when_table``).

So a knob declared with its ``applies`` is applied, read back and documented with no second
list to update. A socket knob that is not set is never written: "not set" is a declared value
(``unset``), because writing the kernel's apparent default is not always "leave it alone" --
``TCP_QUICKACK=0`` puts a connection in delayed-ACK mode at once.
"""

from __future__ import annotations

import enum
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.options import knobs

# What setsockopt takes and getsockopt gives: an int, or the bytes of a C struct.
Raw = int | bytes


class Where(enum.Enum):
    """Where a running server takes a change to a knob, in the order the docs' table lists them."""

    SOCKET = "socket"
    REQUEST = "request"
    ACCEPT = "accept"
    LOOP = "loop"
    WEBSOCKET = "websocket"
    WEBSOCKET_MESSAGE = "websocket message"
    LISTENER = "listener"

    @property
    def label(self) -> str:
        """The words before the knob names in the docs' table."""
        return _LABELS[self]

    @property
    def takes_effect(self) -> str:
        """When a change to a knob of this kind reaches the server's connections (markdown)."""
        return _TAKES_EFFECT[self]


_LABELS = {
    Where.SOCKET: "socket",
    Where.REQUEST: "HTTP",
    Where.ACCEPT: "new connections",
    Where.LOOP: "server-wide",
    Where.WEBSOCKET: "WebSocket",
    Where.WEBSOCKET_MESSAGE: "WebSocket",
    Where.LISTENER: "listener",
}

_TAKES_EFFECT = {
    Where.SOCKET: "**at once, on every open connection** and on new ones. A receive buffer cannot "
                  "grow a window past what the connection's handshake agreed; `None` for a buffer "
                  "or for `quickack` leaves open connections as they are (autotuning cannot be "
                  "switched back on, nor a forced ACK mode undone); a knob that is not set is "
                  "never written to a socket (docs/socket-defaults.md)",
    Where.REQUEST: "from **each connection's next request** (an answer being written finishes as "
                   "it began)",
    Where.ACCEPT: "for connections **accepted after** the change (those already open stay open)",
    Where.LOOP: "**at once**, server-wide (the stall injector stalls the whole loop, not a "
                "connection); every change to any knob restarts its timer, so the next stall "
                "comes `stall_every_seconds` after it",
    Where.WEBSOCKET: "for connections **upgraded after** the change (an open WebSocket keeps what "
                     "its handshake agreed; it does take the socket knobs and `split_writes` at "
                     "once)",
    Where.WEBSOCKET_MESSAGE: "for new WebSockets, and for open ones from their **next message** "
                             "(the idle deadline is set at each message)",
    Where.LISTENER: "the listener is **re-created** (same port): open connections close once "
                    "their answer is out (WebSockets get close code 1012) and the load reconnects",
}


def _as_int(value: Any) -> Raw:
    return int(value)


def _read_int(raw: Raw) -> Any:
    return raw


def _read_bool(raw: Raw) -> Any:
    return bool(raw)


@dataclass(frozen=True, kw_only=True)
class SocketOption:
    """A knob that is a socket option: how its value is written, and how it is read back.

    Declared as a knob's ``applies``; such a knob takes effect at once (:attr:`Where.SOCKET`).
    """

    level: int
    name: int
    # The knob's value as setsockopt takes it (bool and int knobs: the int).
    encode: Callable[[Any], Raw] = _as_int
    # The raw value getsockopt gives, as /sockopts reports it; read_size > 0 reads a struct.
    decode: Callable[[Raw], Any] = _read_int
    read_size: int = 0
    read_as: str | None = None  # the /sockopts key, when not the knob's own name
    # Values that mean "leave the socket as the kernel made it": nothing is written for them.
    unset: tuple[Any, ...] = (None,)
    # Written to an open connection when a live change unsets the knob: the raw value that
    # restores the kernel's default, or None where nothing does (a buffer's autotuning, the
    # quick-ACK mode: 0 forces delayed ACKs, 1 quick ones for a moment; neither is "untouched").
    reset: Raw | None = None
    # Also set on the listener (before listen, and on a live change): accepted sockets inherit it.
    on_listener: bool = False


def linger_option() -> SocketOption:
    """SO_LINGER: a number of seconds is "linger on, that long"; read back as on/off and seconds."""
    def encode(seconds: Any) -> Raw:
        return struct.pack("ii", 1, seconds)

    def decode(raw: Raw) -> Any:
        assert isinstance(raw, bytes)
        onoff, seconds = struct.unpack("ii", raw)
        return {"enabled": bool(onoff), "seconds": seconds}

    return SocketOption(level=socket.SOL_SOCKET, name=socket.SO_LINGER, encode=encode,
                        decode=decode, read_size=8, read_as="linger",
                        reset=struct.pack("ii", 0, 0))


def where(applies: Where | SocketOption) -> Where:
    return Where.SOCKET if isinstance(applies, SocketOption) else applies


def knobs_by_where(config_class: type) -> dict[Where, list[str]]:
    """Every knob of a configuration class under where it applies, in declaration order."""
    grouped: dict[Where, list[str]] = {kind: [] for kind in Where}
    for field, spec in knobs(config_class):
        if spec.applies is None:
            raise TypeError(f"{config_class.__name__}.{field.name} does not say where it applies")
        grouped[where(spec.applies)].append(field.name)
    return grouped


def restart_knobs(config_class: type) -> frozenset[str]:
    """The knobs whose change re-creates the listener."""
    return frozenset(knobs_by_where(config_class)[Where.LISTENER])


# One socket write: (level, option, raw value).
Write = tuple[int, int, Raw]


@dataclass(frozen=True)
class SocketPlan:
    """The socket options of one configuration, worked out once when it is made (per knob
    change, not per connection): what each socket gets, and how to read them back."""

    values: tuple[tuple[str, SocketOption, Any], ...]  # every socket knob: name, option, value
    on_accept: tuple[Write, ...]  # a new connection: the knobs that are set
    on_change: tuple[Write, ...]  # an open connection: what changed since the previous plan
    on_listener: tuple[Write, ...]  # the listener: its inherited options that are set

    def read_back(self, sock: Any) -> dict[str, Any]:
        """Each socket knob as the kernel reports it for this socket (not as asked)."""
        found = {}
        for name, option, _ in self.values:
            raw = (sock.getsockopt(option.level, option.name, option.read_size) if option.read_size
                   else sock.getsockopt(option.level, option.name))
            found[option.read_as or name] = option.decode(raw)
        return found


def socket_plan(config: Any, previous: SocketPlan | None = None) -> SocketPlan:
    """The socket writes of ``config`` (a ServerConfig or a subclass with knobs of its own);
    ``previous`` is the plan the open connections have now."""
    values = tuple((field.name, spec.applies, getattr(config, field.name))
                   for field, spec in knobs(type(config)) if isinstance(spec.applies, SocketOption))
    before = {name: value for name, _, value in previous.values} if previous is not None else {}
    on_accept: list[Write] = []
    on_change: list[Write] = []
    on_listener: list[Write] = []
    for name, option, value in values:
        is_set = value not in option.unset
        if is_set:
            write = (option.level, option.name, option.encode(value))
            on_accept.append(write)
            if option.on_listener:
                on_listener.append(write)
        if previous is None or before.get(name) == value:
            continue
        if is_set:
            on_change.append((option.level, option.name, option.encode(value)))
        elif option.reset is not None:
            on_change.append((option.level, option.name, option.reset))
    return SocketPlan(values, tuple(on_accept), tuple(on_change), tuple(on_listener))


def when_table(config_class: type) -> str:
    """The markdown table of when a change to each knob takes effect on a running server."""
    lines = ["| knobs | takes effect |", "| --- | --- |"]
    for kind, names in knobs_by_where(config_class).items():
        if names:
            listed = ", ".join(f"`{name}`" for name in names)
            lines.append(f"| {kind.label}: {listed} | {kind.takes_effect} |")
    return "\n".join(lines) + "\n"


# --- congestion control (issue 28) ------------------------------------------------------------

# The kernel's lists: what is loaded (any process may read it), and the default new sockets get.
AVAILABLE_CONGESTION_CONTROL = "/proc/sys/net/ipv4/tcp_available_congestion_control"
DEFAULT_CONGESTION_CONTROL = "/proc/sys/net/ipv4/tcp_congestion_control"
CONGESTION_NAME_BYTES = 16  # TCP_CA_NAME_MAX: getsockopt returns the name NUL-padded to this


def _proc_words(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="ascii") as file:
            return tuple(file.read().split())
    except OSError:  # not Linux, or /proc not mounted: no controller can be chosen
        return ()


def available_congestion_controls() -> tuple[str, ...]:
    """The congestion controllers this kernel has loaded (``bbr`` may need ``modprobe tcp_bbr``)."""
    return _proc_words(AVAILABLE_CONGESTION_CONTROL)


def congestion_control_option() -> SocketOption:
    """TCP_CONGESTION, per connection: written and read back as the controller's name.

    Unsetting it on a live server writes the kernel's default back: unlike a buffer's
    autotuning, "the kernel's choice" is a name that can be written.
    """
    def encode(name: Any) -> Raw:
        return str(name).encode("ascii")

    def decode(raw: Raw) -> Any:
        assert isinstance(raw, bytes)
        return raw.split(b"\0", 1)[0].decode("ascii")

    default = _proc_words(DEFAULT_CONGESTION_CONTROL)
    return SocketOption(level=socket.IPPROTO_TCP, name=socket.TCP_CONGESTION, encode=encode,
                        decode=decode, read_size=CONGESTION_NAME_BYTES,
                        reset=default[0].encode("ascii") if default else None)

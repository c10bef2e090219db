"""What every connection of one server shares: its settings as the hot path reads them, its
live counters, its clock and ``Date`` line, and the set of open connections.

Its own module, below the connections and the listener (lab/http/core.py): the HTTP and
WebSocket connections and the socket helpers read it, and it names no connection class, only
what the listener's sweep and close() ask of one (:class:`OpenConnection`), so no module here
imports one that imports it back.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import traceback
from dataclasses import dataclass, fields
from email.utils import formatdate
from typing import Any, Protocol

from lab.http.backend import Backend
from lab.http.config import TLS_CONTEXT_KNOBS, ServerConfig, server_tls_context
from lab.http.knobs import SocketPlan, socket_plan
from lab.http.messages import Request
from lab.http.metrics import RequestDurations, parse_bounds
from lab.http.routing import Router

log = logging.getLogger("lab.server")


class OpenConnection(Protocol):
    """An open HTTP or WebSocket connection, as the listener's sweep and close() see it."""

    deadline: float | None
    transport: asyncio.Transport | None

    def apply_settings(self, settings: Settings) -> None: ...

    def expire(self) -> None: ...

    def shut_down(self, websocket_code: int) -> None: ...


class ServerStats:
    """Live counters, bumped on the hot path (plain attributes: no locks, no dict lookups)."""

    __slots__ = ("backend_dropped", "backend_served", "backend_shed", "bytes_received", "bytes_sent",
                 "connections_open", "connections_total", "errors", "handshaking", "keepalive_timeouts",
                 "reads", "requests", "stalls", "tls_handshakes")

    def __init__(self) -> None:
        self.requests = 0
        self.connections_open = 0
        self.connections_total = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.reads = 0
        self.keepalive_timeouts = 0
        self.stalls = 0
        # TLS: connections accepted whose handshake is under way (they count against
        # max_connections), and handshakes completed
        self.handshaking = 0
        self.tls_handshakes = 0
        # GET /backend (lab/http/backend.py): requests served, shed on arrival (503), and
        # dropped after waiting past the deadline or CoDel's target (503, never served)
        self.backend_served = 0
        self.backend_shed = 0
        self.backend_dropped = 0
        self.errors: dict[str, int] = {}

    def count_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.__slots__}
        values["errors"] = dict(self.errors)
        return values


def add_snapshots(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the counters of several worker processes."""
    total: dict[str, Any] = {name: 0 for name in ServerStats.__slots__}
    total["errors"] = {}
    for snapshot in snapshots:
        for name, value in snapshot.items():
            if name == "errors":
                for kind, count in value.items():
                    total["errors"][kind] = total["errors"].get(kind, 0) + count
            else:
                total[name] += value
    return total


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings(ServerConfig):
    """A ServerConfig as the hot path wants it: every knob a plain attribute (inherited, so a new
    knob needs no line here), header lines pre-encoded, the socket writes worked out."""

    # Slots: with more than 30 attributes an instance's dict stops sharing its keys with the
    # class (CPython's limit), and each read of a setting got slower: callgrind counted 18,255
    # instructions per request for the lab's path against 18,135 before (25 attributes); with
    # slots, 18,099 (benchmarks/request_path_instructions.py).

    keep_line: bytes
    keep_line_http10: bytes
    close_line: bytes
    sockets: SocketPlan
    tls_context: ssl.SSLContext | None

    @classmethod
    def from_config(cls, config: ServerConfig, previous: Settings | None = None) -> Settings:
        """``previous``: the settings the open connections have, which a live change starts from.

        ``config`` may be of a subclass with knobs of its own: its socket knobs are in
        ``sockets`` (what the connection reads by name must be a ServerConfig knob).
        """
        copied = {f.name: getattr(config, f.name) for f in fields(ServerConfig)}
        keepalive_value = config.keepalive_header_value().encode("latin-1")
        # The same context while its knobs stay: a new one would start with no sessions to resume
        same_tls = previous is not None and all(
            getattr(previous, name) == getattr(config, name) for name in TLS_CONTEXT_KNOBS)
        return cls(**copied,
                   keep_line=b"Keep-Alive: " + keepalive_value + b"\r\n",
                   keep_line_http10=b"Connection: keep-alive\r\nKeep-Alive: " + keepalive_value + b"\r\n",
                   close_line=b"Connection: close\r\n",
                   sockets=socket_plan(config, previous.sockets if previous is not None else None),
                   tls_context=previous.tls_context if previous is not None and same_tls
                   else server_tls_context(config))


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, config: ServerConfig, router: Router, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.router = router
        self.settings = settings = Settings.from_config(config)
        # One read buffer for every connection of this loop: the loop reads one connection at a
        # time and buffer_updated consumes each read before the next (what a request still
        # needs is copied out by the reader), so an idle connection holds no buffer at all.
        self.read_view = memoryview(bytearray(settings.read_buffer_bytes))
        self.stats = ServerStats()
        self.durations = RequestDurations(parse_bounds(settings.metrics_buckets))
        # Upgraded connections join too: the sweep and close() treat both kinds alike.
        self.connections: set[OpenConnection] = set()
        self.clock = loop.time()
        self.date_line = b""
        self._date_second = -1
        self.refresh_clock()
        self.backend = Backend(self)  # the pool behind GET /backend

    def use(self, settings: Settings) -> None:
        """New settings for connections made from now on (a reconfigure)."""
        if settings.metrics_buckets != self.settings.metrics_buckets:
            # Other bounds are another histogram: Prometheus sees a new series, not a mix.
            self.durations = RequestDurations(parse_bounds(settings.metrics_buckets))
        self.settings = settings
        if settings.read_buffer_bytes != len(self.read_view):
            self.read_view = memoryview(bytearray(settings.read_buffer_bytes))  # from the next read on

    def refresh_clock(self) -> None:
        self.clock = self.loop.time()
        second = int(time.time())
        if second != self._date_second:
            # A new bytes object only when the second changes: Prebuilt caches by identity.
            self._date_second = second
            self.date_line = f"Date: {formatdate(second, usegmt=True)}\r\n".encode("latin-1")

    def log_handler_error(self, request: Request, error: BaseException) -> None:
        log.error("handler for %s %s failed:\n%s", request.method, request.path,
                  "".join(traceback.format_exception(error)))

"""The server inside one event loop: listener, shared state, timers, live counters.

``LabServer`` owns everything one loop needs: the listening socket (with the buffer options
that must be set before ``listen``), the set of open connections, the counters, the once-a-
tick sweep that enforces timeouts and refreshes the ``Date`` header, and the stall injector.
Where that loop runs -- a thread in a Jupyter kernel, or a process of its own -- is the
business of lab/server.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
from dataclasses import dataclass, fields
from email.utils import formatdate
from typing import Any

from lab.http.config import ServerConfig
from lab.http.connection import HttpConnection
from lab.http.knobs import SocketPlan, socket_plan
from lab.http.messages import Request
from lab.http.routing import Router
from lab.http.websocket import WebSocketConnection
from lab.resources import raise_open_file_limit

log = logging.getLogger("lab.server")


class ServerStats:
    """Live counters, bumped on the hot path (plain attributes: no locks, no dict lookups)."""

    __slots__ = ("bytes_received", "bytes_sent", "connections_open", "connections_total",
                 "errors", "keepalive_timeouts", "reads", "requests", "stalls")

    def __init__(self) -> None:
        self.requests = 0
        self.connections_open = 0
        self.connections_total = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.reads = 0
        self.keepalive_timeouts = 0
        self.stalls = 0
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

    @classmethod
    def from_config(cls, config: ServerConfig, previous: Settings | None = None) -> Settings:
        """``previous``: the settings the open connections have, which a live change starts from.

        ``config`` may be of a subclass with knobs of its own: its socket knobs are in
        ``sockets`` (what the connection reads by name must be a ServerConfig knob).
        """
        copied = {f.name: getattr(config, f.name) for f in fields(ServerConfig)}
        keepalive_value = config.keepalive_header_value().encode("latin-1")
        return cls(**copied,
                   keep_line=b"Keep-Alive: " + keepalive_value + b"\r\n",
                   keep_line_http10=b"Connection: keep-alive\r\nKeep-Alive: " + keepalive_value + b"\r\n",
                   close_line=b"Connection: close\r\n",
                   sockets=socket_plan(config, previous.sockets if previous is not None else None))


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, config: ServerConfig, router: Router, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.router = router
        self.settings = Settings.from_config(config)
        self.stats = ServerStats()
        # Upgraded connections join too: the sweep and close() treat both kinds alike.
        self.connections: set[HttpConnection | WebSocketConnection] = set()
        self.clock = loop.time()
        self.date_line = b""
        self._date_second = -1
        self.refresh_clock()

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


def sweep_interval(config: ServerConfig) -> float:
    """How often to check deadlines: a quarter of the shortest timeout, within [5 ms, 250 ms]."""
    shortest = min(config.keepalive_timeout_seconds, config.header_timeout_seconds,
                   config.body_timeout_seconds, config.send_timeout_seconds)
    return min(0.25, max(0.005, shortest / 4))


def make_listening_socket(config: ServerConfig) -> socket.socket:
    """Bind and listen, with the socket knobs that only take effect when set before ``listen``
    (SO_RCVBUF, for the window scale to match it) and that accepted sockets inherit."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.workers > 1:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        for level, option, value in socket_plan(config).on_listener:
            sock.setsockopt(level, option, value)
        sock.bind((config.host, config.port))
        sock.listen(config.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class LabServer:
    """One listener and its connections, inside the event loop that is running now."""

    def __init__(self, config: ServerConfig, router: Router) -> None:
        self.config = config
        self.router = router
        self.state: ServerState | None = None
        self._server: asyncio.AbstractServer | None = None
        # The two recurring timers, each re-armed by its own callback.
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self.port = 0

    async def start(self, sock: socket.socket | None = None) -> int:
        raise_open_file_limit()  # each connection is a descriptor; 1024 is a common default
        loop = asyncio.get_running_loop()
        self.state = ServerState(self.config, self.router, loop)
        sock = sock or make_listening_socket(self.config)
        self.port = sock.getsockname()[1]
        state = self.state
        self._server = await loop.create_server(lambda: HttpConnection(state), sock=sock,
                                                backlog=self.config.backlog)
        self._schedule_sweep()
        self._schedule_stall()
        return self.port

    def apply(self, config: ServerConfig) -> None:
        """Take new settings that need no new listener: new connections get them, and every
        open connection takes them too (socket knobs at once, HTTP knobs at its next request)."""
        state = self.state
        assert state is not None
        self.config = config
        state.settings = settings = Settings.from_config(config, previous=state.settings)
        self._apply_to_listener(settings)
        for connection in list(state.connections):
            connection.apply_settings(settings)
        self._cancel_timers()
        self._schedule_sweep()
        self._schedule_stall()

    def _apply_to_listener(self, settings: Settings) -> None:
        """The inherited socket knobs, for connections accepted from now on."""
        if self._server is None:
            return
        # asyncio's and uvloop's servers both list their listening sockets (not in the ABC).
        for listener in getattr(self._server, "sockets", ()):
            for level, option, value in settings.sockets.on_listener:
                listener.setsockopt(level, option, value)

    def _schedule_sweep(self) -> None:
        assert self.state is not None
        state, interval = self.state, sweep_interval(self.config)

        def sweep() -> None:
            state.refresh_clock()
            now = state.clock
            for connection in [c for c in state.connections if c.deadline is not None and c.deadline <= now]:
                connection.expire()
            self._sweep_timer = state.loop.call_later(interval, sweep)

        self._sweep_timer = state.loop.call_later(interval, sweep)

    def _schedule_stall(self) -> None:
        config, state = self.config, self.state
        assert state is not None
        every_seconds, stall_seconds = config.stall_every_seconds, config.stall_ms / 1000
        if every_seconds is None or stall_seconds <= 0:
            return

        def stall() -> None:
            # Deliberately block the loop, as a stop-the-world GC pause or a held lock would:
            # every connection waits, which is what coordinated omission hides.
            state.stats.stalls += 1
            time.sleep(stall_seconds)
            self._stall_timer = state.loop.call_later(every_seconds, stall)

        self._stall_timer = state.loop.call_later(every_seconds, stall)

    def _cancel_timers(self) -> None:
        for timer in (self._sweep_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._sweep_timer = self._stall_timer = None

    async def close(self) -> None:
        self._cancel_timers()
        if self._server is not None:
            self._server.close()
        if self.state is not None:
            for connection in list(self.state.connections):
                if connection.transport is not None:
                    connection.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def stats(self) -> dict[str, Any]:
        return self.state.stats.snapshot() if self.state else ServerStats().snapshot()

"""The server inside one event loop: listener, shared state, timers, live counters.

``LabServer`` owns everything one loop needs: the listening socket (with the buffer options
that must be set before ``listen``), the set of open connections, the counters, the once-a-
tick sweep that enforces timeouts and refreshes the ``Date`` header, and the stall injector.
Where that loop runs -- a thread in a Jupyter kernel, or a process of its own -- is the
business of lab/server.py.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import Callable
from typing import Any

from websockets.frames import CloseCode

from lab.http.asgi import AppConnection, AsgiHost
from lab.http.config import ServerConfig
from lab.http.connection import HttpConnection
from lab.http.handshake import Handshakes
from lab.http.knobs import socket_plan
from lab.http.listener import Listener
from lab.http.routing import Router
from lab.http.state import ServerState, ServerStats, Settings
from lab.http.websocket import CLOSE_TIMEOUT_SECONDS
from lab.resources import HiccupMeter, raise_open_file_limit

# How long a stopping server lets its open connections end on their own -- an answer being
# made goes out, a WebSocket client answers our close frame -- before it cuts the rest: the
# WebSocket close handshake's own timeout, so a client that answers in time is never cut.
SHUTDOWN_GRACE_SECONDS = CLOSE_TIMEOUT_SECONDS


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
        if config.workers > 1 and config.balance == "reuseport":
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

    def __init__(self, config: ServerConfig, router: Router, app: AsgiHost | None = None) -> None:
        self.config = config
        self.router = router
        self.app = app  # a hosted ASGI app answers instead of the router
        self.state: ServerState | None = None
        self._listener: Listener | None = None
        self._handshakes: Handshakes | None = None
        # The two recurring timers, each re-armed by its own callback.
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        # Kept across reconfigures (which restart the timers above): a series with a gap at
        # each knob change would hide what the change did.
        self.hiccups = HiccupMeter()
        self._gc_heap: list[list[int]] | None = None  # what a GC stall collects over
        self.port = 0
        self.restarting = False  # set before a stop that a restart follows (WebSocket code 1012)
        self._cutting = False  # a stop that no longer waits for open connections (cut_now)

    async def start(self, sock: socket.socket | None = None) -> int:
        raise_open_file_limit()  # each connection is a descriptor; 1024 is a common default
        loop = asyncio.get_running_loop()
        self.state = ServerState(self.config, self.router, loop)
        sock = sock or make_listening_socket(self.config)
        self.port = sock.getsockname()[1]
        state, app = self.state, self.app
        if app is not None:
            try:
                await app.startup()  # before the first connection, as uvicorn does
            except BaseException:
                sock.close()
                raise
        connection: Callable[[], HttpConnection] = (
            (lambda: HttpConnection(state)) if app is None else (lambda: AppConnection(state, app)))
        # Not loop.create_server: uvloop's accepts one connection per turn (lab/http/listener.py).
        # With TLS each accepted socket goes through the handshake's gate first.
        self._handshakes = Handshakes(state, connection) if self.config.tls else None
        self._listener = Listener(sock, connection, batch=self.config.backlog,
                                  hand_over=self._handshakes.start if self._handshakes else None)
        self._schedule_sweep()
        self._schedule_stall()
        self._switch_hiccup_meter()
        return self.port

    def apply(self, config: ServerConfig) -> None:
        """Take new settings that need no new listener: new connections get them, and every
        open connection takes them too (socket knobs at once, HTTP knobs at its next request)."""
        state = self.state
        assert state is not None
        self.config = config
        settings = Settings.from_config(config, previous=state.settings)
        state.use(settings)
        self._apply_to_listener(settings)
        for connection in list(state.connections):
            connection.apply_settings(settings)
        self._cancel_timers()
        self._schedule_sweep()
        self._schedule_stall()
        self._switch_hiccup_meter()

    def _switch_hiccup_meter(self) -> None:
        assert self.state is not None
        if self.config.hiccup_meter:
            self.hiccups.start(self.state.loop)
        else:
            self.hiccups.stop()

    def _apply_to_listener(self, settings: Settings) -> None:
        """The inherited socket knobs, for connections accepted from now on."""
        if self._listener is None:
            return
        for listening in self._listener.sockets:
            for level, option, value in settings.sockets.on_listener:
                listening.setsockopt(level, option, value)

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
        heap = self._gc_heap_for(config.stall_gc_heap_objects)
        if every_seconds is None or (stall_seconds <= 0 and heap is None):
            return

        def stall() -> None:
            # Deliberately block the loop, as a stop-the-world GC pause or a held lock would:
            # every connection waits, which is what coordinated omission hides.
            state.stats.stalls += 1
            if heap is not None:
                gc.collect()  # a real one: it walks every container of the heap
            else:
                time.sleep(stall_seconds)
            self._stall_timer = state.loop.call_later(every_seconds, stall)

        self._stall_timer = state.loop.call_later(every_seconds, stall)

    def _gc_heap_for(self, objects: int | None) -> list[list[int]] | None:
        """The heap a GC stall collects over, built once per size (and dropped when unset)."""
        if objects is None:
            self._gc_heap = None
        elif self._gc_heap is None or len(self._gc_heap) != objects:
            self._gc_heap = [[index] for index in range(objects)]  # containers: the GC walks each
        return self._gc_heap

    def _cancel_timers(self) -> None:
        for timer in (self._sweep_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._sweep_timer = self._stall_timer = None

    @property
    def listening_socket(self) -> socket.socket | None:
        """The socket it accepts from (handed to the other workers when they share it)."""
        return self._listener.sock if self._listener is not None else None

    async def close(self, websocket_code: int = CloseCode.GOING_AWAY) -> None:
        """Stop accepting, let the open connections end (within SHUTDOWN_GRACE_SECONDS), cut
        what is left, then shut a hosted app down. ``websocket_code`` is what WebSocket clients
        are told: 1001 when the server stops, 1012 when it restarts for a reconfigure."""
        self._cancel_timers()
        self.hiccups.stop()
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
        if self._handshakes is not None:
            await self._handshakes.close()
        if self.state is not None:
            await self._end_connections(self.state, websocket_code)
            await self.state.backend.close()
        self._listener = None
        if self.app is not None:
            await self.app.shutdown()

    def cut_now(self) -> None:
        """Stop waiting for open connections to end (a second Ctrl-C): cut them at once."""
        self._cutting = True

    @property
    def open_connections(self) -> int:
        return len(self.state.connections) if self.state is not None else 0

    async def _end_connections(self, state: ServerState, websocket_code: int) -> None:
        """As uvicorn and nginx stop: an idle connection is closed (FIN, not a reset), one
        making an answer closes after it, a WebSocket gets a close frame; whatever is still
        open after the grace period (a client that neither reads nor answers) is cut."""
        for connection in list(state.connections):
            connection.shut_down(websocket_code)
        give_up = state.loop.time() + SHUTDOWN_GRACE_SECONDS
        await asyncio.sleep(0)  # closed transports report connection_lost on the next turn
        while state.connections and state.loop.time() < give_up and not self._cutting:
            await asyncio.sleep(0.001)  # a restart's pause is as long as this wait: keep it short
        for connection in list(state.connections):
            if connection.transport is not None:
                connection.transport.abort()

    def stats(self) -> dict[str, Any]:
        return self.state.stats.snapshot() if self.state else ServerStats().snapshot()

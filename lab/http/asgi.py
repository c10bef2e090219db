"""Any ASGI 3 application, answering where the demo routes' handlers answer.

A hosted app gets its own connection class, :class:`AppConnection`, an ``HttpConnection``
whose requests go to the app instead of the router. Everything before the app and around it
stays the server's: the reader's strict HTTP (Host, transfer codings, the size limits: the
app never sees a request the server refused), the socket knobs and their live changes, the
deadlines, pipelining in order, flow control, the stall injector and the counters. The app's
answer leaves through the connection's own paths: a response whose body comes in one message
is one ``_send`` (one write, ``Content-Length`` added when the app gave none, ``HEAD`` without
body); a body in several messages is a stream (``Transfer-Encoding: chunked`` when the app
gave no length on HTTP/1.1, close-delimited on HTTP/1.0), and ``send`` waits while the
client is not reading.

A request with a body reaches the app as soon as its head is checked, and ``receive`` gives
the body as it is read (:class:`RequestBody`): what arrived since the last call, ``more_body``
true until the end. Past ``BODY_HIGH_WATER_BYTES`` not yet taken, the connection stops reading
the socket until the app takes them (and runs no read deadline meanwhile: the server is the one
holding the client back). A body that ends early -- the client gone, refused midway by the
reader (over ``max_body_bytes`` in chunks, bad framing), too slow -- gives the app
``http.disconnect``; the error answer goes out if the app's has not begun, else the connection
is cut. ``100 Continue`` goes out at the app's first ``receive``, as uvicorn sends it. What
differs from uvicorn's httptools protocol, which this follows message by message: the server
adds ``Date`` and its keep-alive or close line itself (an app's ``Connection: close`` is
honoured, its ``Connection``, ``Keep-Alive`` and ``Date`` headers are not copied).

The scope carries one extension of the lab's: ``scope["extensions"]["lab.socket_options"]``,
a function giving the TCP options of the request's connection as the kernel reports them,
the ``/sockopts`` read-back of the demo routes for an app that wants to show it.

WebSocket requests run the ASGI websocket protocol over :class:`WebSocketConnection`: the
handshake is checked first (a bad one is answered 400 or 426 without the app), the app's
``websocket.accept`` sends the 101 (with its subprotocol and headers), a ``websocket.close``
before that refuses the upgrade with 403.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

from lab.errors import ConfigError, ServerError
from lab.http.connection import CONTINUE, HttpConnection
from lab.http.messages import NO_PARAMS, Request, Response, WebSocketSession, status_line
from lab.http.reader import Rejection
from lab.http.websocket import WebSocketConnection, is_websocket_upgrade

if TYPE_CHECKING:
    from lab.http.state import ServerState, Settings

__all__ = ["AppConnection", "AsgiApp", "AsgiHost", "ClientDisconnected", "Lifespan", "load_app", "serve_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Lifespan = Literal["auto", "on", "off"]

log = logging.getLogger("lab.server")

# The versions uvicorn announces: ASGI 3, HTTP and WebSocket spec 2.4, lifespan spec 2.0.
HTTP_ASGI = {"version": "3.0", "spec_version": "2.4"}
LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}
# How long the app has for its lifespan shutdown once the server has stopped serving.
SHUTDOWN_TIMEOUT_SECONDS = 10.0
# RFC 9110 section 5.6.2: a header name is a token; a value must not break the framing.
_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
# Header names an app sent before, checked and lower-cased: apps send the same few names.
_NAMES_SEEN: dict[bytes, bytes] = {}
_NAMES_SEEN_LIMIT = 1000
# Headers the server writes itself (Date, its keep-alive or close line, the body's framing),
# and Content-Length, which it reads: an app's own copies of the others are not sent.
_FRAMING = frozenset((b"connection", b"keep-alive", b"date", b"transfer-encoding", b"content-length"))
# RFC 9110 section 6.4.1: these answers have no body, so no length and no chunked framing.
_NO_BODY_STATUSES = frozenset((204, 304))
_STATUS_LINES: dict[int, bytes] = {}
# A request body read from the socket and not yet taken by the app waits in the server up to
# this many bytes (and the read that crossed it); past it the server stops reading, so a client
# sending faster than the app takes waits in TCP's flow control, not in the server's memory.
# uvicorn's high-water mark for the same purpose is 64 KiB too.
BODY_HIGH_WATER_BYTES = 64 * 1024


class ClientDisconnected(OSError):
    """A WebSocket app sent to a client that has gone (as uvicorn raises it)."""


def load_app(app: AsgiApp | str) -> tuple[AsgiApp, str]:
    """An ASGI app, or ``"module:attribute"`` naming one; with the name it is shown by."""
    if not isinstance(app, str):
        if not callable(app):
            raise ConfigError("app", f"{type(app).__name__} is not an ASGI app (a callable)")
        return app, getattr(app, "__qualname__", type(app).__name__)
    module_name, colon, attribute = app.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigError("app", f"{app!r} is not MODULE:ATTRIBUTE")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError("app", f"cannot import {module_name!r}: {error}") from None
    for name in attribute.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise ConfigError("app", f"{module_name!r} has no {attribute!r}") from None
    if not callable(found):
        raise ConfigError("app", f"{app} is a {type(found).__name__}, not an ASGI app (a callable)")
    return found, app


def _one_line(text: str) -> str:
    """The last line of a message that may be a whole traceback (Starlette sends one)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"


class AsgiHost:
    """One app in one server: its lifespan, the state it shares with requests, its tasks."""

    def __init__(self, app: AsgiApp, name: str, lifespan: Lifespan = "auto") -> None:
        if lifespan not in ("auto", "on", "off"):
            raise ConfigError("lifespan", f"must be auto, on or off, got {lifespan!r}")
        self.app = app
        self.name = name
        self.lifespan = lifespan
        self.state: dict[str, Any] = {}  # lifespan's scope["state"]; each request gets a copy
        self.tasks: set[asyncio.Task[None]] = set()
        self._lifespan_task: asyncio.Task[None] | None = None
        self._startup: asyncio.Future[str | None] | None = None  # None: started; else why not
        self._shutdown_asked: asyncio.Future[None] | None = None
        self._shutdown: asyncio.Future[str | None] | None = None

    def run(self, cycle: HttpCycle | WebSocketCycle, scope: Scope) -> None:
        """Run one request's (or WebSocket's) app call; the server's close cancels leftovers.

        The task leaves ``tasks`` as its last step, not by a done callback: that would be one
        more turn of the loop per request, and with the task itself the most of what hosting
        an app costs beyond the demo routes.
        """
        cycle.task = task = asyncio.get_running_loop().create_task(cycle.run(self, scope))
        self.tasks.add(task)

    # --- lifespan ---------------------------------------------------------------------

    async def startup(self) -> None:
        """Run the app's lifespan startup; ServerError, in one line, if it fails."""
        if self.lifespan == "off":
            return
        loop = asyncio.get_running_loop()
        self._startup, self._shutdown = loop.create_future(), loop.create_future()
        self._shutdown_asked = loop.create_future()
        self._lifespan_task = loop.create_task(self._run_lifespan())
        failure = await self._startup
        if failure is not None:
            raise ServerError(f"the app {self.name} failed its lifespan startup: {failure}")

    async def shutdown(self) -> None:
        """Ask the app to shut down, and cancel what is still running of its requests."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=SHUTDOWN_TIMEOUT_SECONDS)
        lifespan, asked, done = self._lifespan_task, self._shutdown_asked, self._shutdown
        if lifespan is None or lifespan.done() or asked is None or done is None:
            return
        asked.set_result(None)
        try:
            failure = await asyncio.wait_for(asyncio.shield(done), SHUTDOWN_TIMEOUT_SECONDS)
        except TimeoutError:
            failure = f"no answer within {SHUTDOWN_TIMEOUT_SECONDS:g} s"
        if failure is not None:
            log.error("the app %s failed its lifespan shutdown: %s", self.name, failure)
        lifespan.cancel()

    async def _run_lifespan(self) -> None:
        started, finished = self._startup, self._shutdown
        assert started is not None and finished is not None
        scope = {"type": "lifespan", "asgi": LIFESPAN_ASGI, "state": self.state}
        try:
            await self.app(scope, self._lifespan_receive, self._lifespan_send)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            reason = f"{type(error).__name__}: {error}"
            if not started.done():
                # uvicorn's "auto": an app that raises at once speaks no lifespan; "on" insists.
                started.set_result(reason if self.lifespan == "on" else None)
                if self.lifespan == "auto":
                    log.info("the app %s does not speak ASGI lifespan (%s)", self.name, reason)
            elif not finished.done():
                finished.set_result(reason)
        finally:
            if not started.done():
                started.set_result("the lifespan call returned before startup completed"
                                   if self.lifespan == "on" else None)
            if not finished.done():
                finished.set_result(None)

    async def _lifespan_receive(self) -> Message:
        assert self._startup is not None and self._shutdown_asked is not None
        if not self._startup.done():
            return {"type": "lifespan.startup"}
        await self._shutdown_asked
        return {"type": "lifespan.shutdown"}

    async def _lifespan_send(self, message: Message) -> None:
        assert self._startup is not None and self._shutdown is not None
        kind = message["type"]
        if kind == "lifespan.startup.complete" and not self._startup.done():
            self._startup.set_result(None)
        elif kind == "lifespan.startup.failed" and not self._startup.done():
            self._startup.set_result(_one_line(message.get("message", "") or "startup failed"))
        elif kind == "lifespan.shutdown.complete" and not self._shutdown.done():
            self._shutdown.set_result(None)
        elif kind == "lifespan.shutdown.failed" and not self._shutdown.done():
            self._shutdown.set_result(_one_line(message.get("message", "") or "shutdown failed"))


# --- HTTP -------------------------------------------------------------------------------

def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise RuntimeError(f"ASGI response status {status!r} is not a three-digit integer")
        line = _STATUS_LINES[status] = status_line(status)  # an unknown code's reason: "Unknown"
    return line


def _checked_name(name: bytes) -> bytes:
    if not name or _BAD_NAME.search(name):
        raise RuntimeError(f"invalid HTTP header name {name!r}")
    lowered = name.lower()
    if len(_NAMES_SEEN) < _NAMES_SEEN_LIMIT:
        _NAMES_SEEN[name] = lowered
    return lowered


class AppResponse:
    """An app's whole answer, encoded as the connection's ``_send`` encodes a Response."""

    __slots__ = ("body", "head")

    def __init__(self, head: bytes, body: bytes) -> None:
        self.head = head
        self.body = body

    def fixed_head(self) -> bytes:
        return self.head


class RequestBody:
    """A request's body as the reader reads it, waiting for its app to take it."""

    __slots__ = ("buffered", "complete", "continue_expected", "discarding", "failed", "parts")

    def __init__(self, continue_expected: bool = False) -> None:
        # The client asked for 100 Continue before it sends the body; the app's first receive
        # sends it (as uvicorn does), so an app that answers without reading spares the upload.
        self.continue_expected = continue_expected
        self.parts: list[bytes] = []
        self.buffered = 0
        self.complete = False  # the last byte is read (the parts may still wait)
        self.failed = False  # the body will never be whole: the client went, or it was refused
        self.discarding = False  # the app has answered: the rest is read and dropped

    def add(self, data: bytes) -> bool:
        """Keep ``data`` for the app; True when what waits is over the high-water mark."""
        if self.discarding:
            return False
        self.parts.append(data)
        self.buffered += len(data)
        return self.buffered > BODY_HIGH_WATER_BYTES

    def take(self) -> bytes:
        """Everything that waits, in one piece (uvicorn also gives it in one message)."""
        parts = self.parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.parts = []
        self.buffered = 0
        return data

    def discard(self) -> None:
        self.discarding = True
        self.parts = []
        self.buffered = 0


@dataclass(slots=True)
class StreamedRequest(Request):
    """A request whose body the app reads in parts as they arrive (``body`` stays empty)."""

    body_stream: RequestBody = field(default_factory=RequestBody)


class HttpCycle:
    """One request's ``receive`` and ``send``: the app's messages turned into the answer."""

    __slots__ = (
        "_body_given",
        "_chunked",
        "_content_length",
        "_head",
        "_keep",
        "_peer_done",
        "_sent",
        "_status",
        "_stream_keep",
        "_waiter",
        "complete",
        "connection",
        "disconnected",
        "request",
        "request_body",
        "started",
        "started_ns",
        "streaming",
        "task",
    )

    def __init__(self, connection: AppConnection, request: Request, started_ns: int) -> None:
        self.connection = connection
        self.request = request
        self.started_ns = started_ns
        self.started = False  # http.response.start received
        self.streaming = False  # the head is written: what follows goes out as it comes
        self.complete = False  # the last body message was sent
        self.disconnected = False
        self._keep = request.keep_alive  # an app's "Connection: close" ends the connection
        self._body_given = False
        self._peer_done = False
        self._waiter: asyncio.Future[None] | None = None  # a receive waiting for the end
        self.task: asyncio.Task[None] | None = None  # what runs the app for it
        # The body in parts as it arrives; None when the reader read it whole (or there is none).
        self.request_body = request.body_stream if type(request) is StreamedRequest else None
        # Set by http.response.start: _head, _status, _content_length; by the first streamed
        # body: _chunked, _sent, _stream_keep (nothing reads them before; a request costs less).

    async def run(self, host: AsgiHost, scope: Scope) -> None:
        try:
            await host.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._cut()
            raise
        except BaseException as error:
            self._failed(error)
        else:
            if not self.complete:
                self._returned()
        finally:
            host.tasks.discard(self.task)

    def _failed(self, error: BaseException) -> None:
        connection = self.connection
        if self.disconnected:
            self._cut()  # the client went away; what the app did next is its own business
        elif self.complete:
            # The answer is out already (the app failed after it, e.g. sending once more): no
            # second answer may follow it, so the connection closes, as uvicorn closes it.
            connection.state.stats.count_error("handler_error")
            connection.state.log_handler_error(self.request, error)
            connection.closing = True
            if connection.transport is not None:
                connection.transport.close()
        elif not self.streaming:
            # Nothing written yet: the client gets a 500 (and the connection closes after it).
            self.complete = True
            connection._handler_failed(self.request, error)
            connection._next_in_queue()
        else:
            connection.state.stats.count_error("handler_error")
            connection.state.log_handler_error(self.request, error)
            self._cut()

    def _returned(self) -> None:
        """The app returned without completing its response."""
        connection = self.connection
        if self.disconnected or self._peer_done:
            self._cut()
            return
        reason = ("without starting a response" if not self.started
                  else "without completing its response")
        returned = RuntimeError(f"the ASGI app returned {reason}")
        if self.streaming:
            connection.state.stats.count_error("handler_error")
            connection.state.log_handler_error(self.request, returned)
            self._cut()
        else:
            self.complete = True
            connection._handler_failed(self.request, returned)
            connection._next_in_queue()

    def _cut(self) -> None:
        """End a response that cannot be finished: the client sees the connection close."""
        if self.complete:
            return
        self.complete = True
        self.connection.closing = True
        if self.streaming:
            self.connection._end_stream(False, self.started_ns)
        else:
            self.connection._next_in_queue()

    def disconnect(self) -> None:
        """The client went away: a waiting ``receive`` gets http.disconnect."""
        self.disconnected = True
        self._wake()

    def peer_done(self) -> None:
        """The client half-closed: ``receive`` says http.disconnect, what is sent still goes."""
        self._peer_done = True
        self._wake()

    def body_moved(self) -> None:
        """More of the request body arrived, or its end, or it failed."""
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> Message:
        request_body = self.request_body
        # Once the answer is complete the request is over for the app: http.disconnect, as
        # uvicorn says, whatever of the body it did not read.
        if request_body is not None and not self._body_given and not self.complete:
            return await self._next_body_part(request_body)
        if not self._body_given and not (self.disconnected or self.complete):
            self._body_given = True
            return {"type": "http.request", "body": self.request.body, "more_body": False}
        if not (self.disconnected or self.complete or self._peer_done):
            self._waiter = waiter = self.connection.state.loop.create_future()
            await waiter
        return {"type": "http.disconnect"}

    async def _next_body_part(self, request_body: RequestBody) -> Message:
        """What has arrived of the body since the last call, waiting for some if none has."""
        if request_body.continue_expected:
            request_body.continue_expected = False
            self.connection._send_continue()
        while not (self.disconnected or request_body.failed):
            if request_body.parts or request_body.complete:
                data = request_body.take()
                self.connection._body_taken()
                more = not request_body.complete
                self._body_given = not more
                return {"type": "http.request", "body": data, "more_body": more}
            self._waiter = waiter = self.connection.state.loop.create_future()
            await waiter
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.disconnected:
            return  # as uvicorn: the app finds out through receive, not by an error here
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {kind!r}")
            self._start(message)
        elif self.complete:
            raise RuntimeError(f"unexpected ASGI message {kind!r} after the response completed")
        elif kind != "http.response.body":
            raise RuntimeError(f"expected ASGI message 'http.response.body', got {kind!r}")
        else:
            body = message.get("body", b"")
            if message.get("more_body", False):
                await self._stream(body)
            elif self.streaming:
                await self._stream(body)
                self._finish_stream()
            else:
                self._whole(body)

    def _start(self, message: Message) -> None:
        status = message["status"]
        request_body = self.request_body
        if request_body is not None and request_body.continue_expected and not request_body.complete:
            # Answered without asking for the body: the client may or may not send it now
            # (RFC 9110 section 10.1.1), so nothing after it on this connection can be framed.
            self._keep = False
        lines = [_status_line(status)]
        content_length: int | None = None
        for name, value in message.get("headers", ()):
            lowered = _NAMES_SEEN.get(name)
            if lowered is None:
                lowered = _checked_name(name)
            if b"\r" in value or b"\n" in value or b"\0" in value:
                raise RuntimeError(f"invalid HTTP header value {value!r}")
            if lowered in _FRAMING:
                if lowered == b"content-length":
                    content_length = int(value)
                elif lowered == b"connection" and b"close" in value.lower():
                    self._keep = False
                    continue
                else:
                    continue  # the server's own (Date, keep-alive) or its framing (chunked)
            lines.append(name + b": " + value + b"\r\n")
        self.started = True
        self._head = b"".join(lines)
        self._content_length = content_length
        self._status = status

    def _whole(self, body: bytes) -> None:
        """The common case: the whole body in one message, sent with the head in one write."""
        request, length = self.request, self._content_length
        head = self._head
        if self._status in _NO_BODY_STATUSES or self._status < 200:
            body = b""
        elif length is None:
            head += b"content-length: %d\r\n" % len(body)
        elif length != len(body) and request.method != "HEAD":
            raise RuntimeError(f"the response body has {len(body)} bytes, Content-Length said {length}")
        self.complete = True
        self._wake()
        connection = self.connection
        if not self._keep:
            connection.closing = True
        connection._send(request, AppResponse(head, body), self.started_ns)
        connection._next_in_queue()

    async def _stream(self, body: bytes) -> None:
        connection, request = self.connection, self.request
        if not self.streaming:
            self.streaming = True
            head = self._head
            self._chunked = False
            if self._content_length is None and request.method != "HEAD" and \
                    self._status not in _NO_BODY_STATUSES and self._status >= 200:
                if request.http_version == "1.0":
                    self._keep = False  # no length and no chunked in HTTP/1.0: the close ends it
                else:
                    self._chunked = True
                    head += b"transfer-encoding: chunked\r\n"
            self._sent = 0
            self._stream_keep = connection._start_stream(request, head, self._keep)
        if not body or request.method == "HEAD":
            return
        self._sent += len(body)
        if self._content_length is not None and self._sent > self._content_length:
            raise RuntimeError(f"the response body is longer than its Content-Length, {self._content_length}")
        data = b"%x\r\n%s\r\n" % (len(body), body) if self._chunked else body
        if not await connection._write_chunk(data):
            self.disconnect()

    def _finish_stream(self) -> None:
        if self.disconnected:
            return
        if self._chunked:
            self.connection._write(b"0\r\n\r\n", 0)
        elif (self._content_length is not None and self._sent != self._content_length
              and self.request.method != "HEAD"):
            raise RuntimeError(f"the response body has {self._sent} bytes, Content-Length said "
                               f"{self._content_length}")
        self.complete = True
        self._wake()
        self.connection._end_stream(self._stream_keep, self.started_ns)


# --- WebSocket --------------------------------------------------------------------------

class AppWebSocket(WebSocketConnection):
    """A WebSocket connection that tells its ASGI cycle when the client closes or goes."""

    def __init__(self, state: ServerState, settings: Settings, cycle: WebSocketCycle) -> None:
        super().__init__(state, settings, cycle)
        self.cycle = cycle
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # Back-pressure on the app's send: while the client is not reading, websocket.send waits.
    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_paused = False
        self._wake_sender()

    def _wake_sender(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drained(self) -> None:
        """Until the client has read enough of what was sent (or gone)."""
        while self.write_paused and self.transport is not None:
            self._drain_waiter = self.state.loop.create_future()
            await self._drain_waiter

    def _tell_cycle_closed(self) -> None:
        received = self.protocol.close_rcvd
        if received is None:
            self.cycle.disconnect(1006)  # RFC 6455 7.1.5: closed without a close frame
        else:
            self.cycle.disconnect(int(received.code), received.reason)

    def receive(self, data: bytes) -> None:
        super().receive(data)
        if self.protocol.close_rcvd is not None:
            self._tell_cycle_closed()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake_sender()
        self._tell_cycle_closed()


class WebSocketCycle:
    """The ASGI websocket messages of one upgrade request, over an :class:`AppWebSocket`."""

    def __init__(self, connection: AppConnection, request: Request,
                 socket: AppWebSocket | None = None) -> None:
        self.connection = connection
        self.request = request
        self.socket = socket
        self.accepted = False
        self.refused = False
        self.closed = False  # the app sent websocket.close
        self.disconnected = False
        self._incoming: deque[Message] = deque([{"type": "websocket.connect"}])
        self.task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._code = 1006
        self._reason: str | None = None  # the client's close reason, when it sent a close frame

    # what the WebSocketConnection calls (lab.http.messages.WebSocketApp)
    def on_open(self, session: WebSocketSession) -> None:
        pass

    def on_message(self, session: WebSocketSession, text: bool, payload: bytes) -> None:
        self._incoming.append({"type": "websocket.receive", "text": payload.decode()} if text
                              else {"type": "websocket.receive", "bytes": bytes(payload)})
        self._wake()

    def disconnect(self, code: int = 1006, reason: str | None = None) -> None:
        if not self.disconnected:
            self.disconnected = True
            self._code = code
            self._reason = reason
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, host: AsgiHost, scope: Scope) -> None:
        try:
            await self._run(host.app, scope)
        finally:
            host.tasks.discard(self.task)

    async def _run(self, app: AsgiApp, scope: Scope) -> None:
        connection = self.connection
        try:
            await app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._end(1012)
            raise
        except BaseException as error:
            if not (self.accepted or self.refused or self.disconnected):
                connection._handler_failed(self.request, error)  # as plain HTTP: 500
            else:
                connection.state.stats.count_error("handler_error")
                connection.state.log_handler_error(self.request, error)
                self._end(1011)  # RFC 6455 7.4.1: the server met a condition it cannot handle
            return
        if not (self.accepted or self.refused or self.disconnected):
            connection._handler_failed(self.request, RuntimeError("the ASGI app returned without "
                                                                  "accepting or closing the WebSocket"))
        else:
            self._end(1000)

    def _end(self, code: int) -> None:
        if self.socket is not None and self.accepted and not self.disconnected:
            self.socket.close(code)

    async def receive(self) -> Message:
        while not self._incoming:
            if self.disconnected:
                if self._reason is None:
                    return {"type": "websocket.disconnect", "code": self._code}
                return {"type": "websocket.disconnect", "code": self._code, "reason": self._reason}
            self._waiter = waiter = self.connection.state.loop.create_future()
            await waiter
        return self._incoming.popleft()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        socket = self.socket
        if kind == "websocket.accept" and not (self.accepted or self.refused):
            if self.disconnected or socket is None:
                raise ClientDisconnected("the client went away before the WebSocket was accepted")
            self.accepted = True
            self.connection._hand_over(socket, message.get("subprotocol"),
                                       [(name.decode("latin-1"), value.decode("latin-1"))
                                        for name, value in message.get("headers", ())])
        elif kind == "websocket.close" and not (self.accepted or self.refused):
            self.refused = True  # before the handshake: the upgrade is refused as HTTP
            self.connection._refuse_upgrade()
        elif not self.accepted or socket is None:
            raise RuntimeError(f"ASGI message {kind!r} before websocket.accept")
        elif self.disconnected or self.closed:
            raise ClientDisconnected(f"{kind}: the WebSocket is closed")
        elif kind == "websocket.send":
            text = message.get("text")
            if text is not None:
                socket.send(True, text.encode())
            else:
                socket.send(False, bytes(message.get("bytes") or b""))
            if socket.write_paused:
                await socket.drained()
        elif kind == "websocket.close":
            self.closed = True
            socket.close(int(message.get("code", 1000)), message.get("reason") or "")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on a WebSocket")


# --- the connection ---------------------------------------------------------------------

def _address(address: Any) -> tuple[str, int] | None:
    return (str(address[0]), int(address[1])) if isinstance(address, tuple) and len(address) >= 2 else None


def _subprotocols(request: Request) -> list[str]:
    offered = request.header("sec-websocket-protocol")
    return [name.strip() for name in offered.split(",") if name.strip()] if offered else []


class AppConnection(HttpConnection):
    """An HTTP connection whose requests go to a hosted ASGI app instead of the router."""

    __slots__ = ("_client", "_continue_expected", "_cycle", "_extensions", "_host", "_reading_body",
                 "_scheme", "_server", "_upgrade_rest")

    def __init__(self, state: ServerState, host: AsgiHost) -> None:
        super().__init__(state)
        self._host = host
        self._cycle: HttpCycle | WebSocketCycle | None = None
        self._client: tuple[str, int] | None = None
        self._server: tuple[str, int] | None = None
        self._upgrade_rest = b""  # a client's first frames, sent before the app accepted
        self._scheme = ("http", "ws")
        self._extensions = {"lab.socket_options": {"read": self.socket_options}}
        self._reading_body: RequestBody | None = None  # the body the reader is filling
        self._continue_expected = False  # the head being read asked for 100 Continue
        self.reader.stream_bodies_to(self)

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._client = _address(transport.get_extra_info("peername"))
        self._server = _address(transport.get_extra_info("sockname"))
        if transport.get_extra_info("sslcontext") is not None:
            self._scheme = ("https", "wss")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        cycle = self._cycle
        if cycle is not None:
            cycle.disconnect()

    def eof_received(self) -> bool:
        # As uvicorn: a client that stops sending has gone, as far as the app can tell (a
        # streaming app stops); what is already queued is still answered.
        keep_open = super().eof_received()
        request_body, self._reading_body = self._reading_body, None
        if request_body is not None:
            request_body.failed = True  # it ends before its end: it will never be whole
        cycle = self._cycle
        if isinstance(cycle, WebSocketCycle):
            if not cycle.accepted:
                # Gone before the app accepted: no handshake can complete (uvicorn's 1006).
                cycle.disconnect()
                return False
        elif cycle is not None:
            cycle.peer_done()
        return keep_open

    def on_request(self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]],
                   body: bytes, http_version: str, keep_alive: bool) -> bool:
        self.deadline = None
        self._continue_expected = False  # no body to ask for: it was whole, or there is none
        self._queue_or_send(Request(method, path, query, headers, body, http_version, keep_alive,
                                    NO_PARAMS, self))
        return self.closing

    # --- request bodies in parts (lab/http/reader.py's BodyListener) ------------------------

    def on_continue_expected(self) -> None:
        self._continue_expected = True  # sent at the app's first receive (_send_continue)

    def _send_continue(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._write(CONTINUE, 0)

    def on_request_head(self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]],
                        http_version: str, keep_alive: bool) -> bool:
        request = StreamedRequest(method, path, query, headers, b"", http_version, keep_alive,
                                  NO_PARAMS, self, body_stream=RequestBody(self._continue_expected))
        self._continue_expected = False
        self._reading_body = request.body_stream
        self._queue_or_send(request)
        return self.closing

    def on_body_part(self, data: bytes) -> None:
        request_body = self._reading_body
        if request_body is None:
            return
        if request_body.add(data) and not self._paused_for_body:
            # The app has not kept up: read no more until it takes what waits.
            self._paused_for_body = True
            if self.transport is not None:
                self.transport.pause_reading()
        self._tell_body_moved(request_body)

    def on_body_end(self) -> bool:
        request_body, self._reading_body = self._reading_body, None
        if request_body is not None:
            request_body.complete = True
            self._tell_body_moved(request_body)
        if self._busy or self._pending:
            self._clear_deadline()  # the request is whole: the server is the one to answer
        else:
            self._arm_reading_deadline()  # answered already: the next request's wait begins
        return self.closing

    def _tell_body_moved(self, request_body: RequestBody) -> None:
        cycle = self._cycle
        if isinstance(cycle, HttpCycle) and cycle.request_body is request_body:
            cycle.body_moved()

    def _reading(self, waiting: Any) -> None:
        if self._paused_for_body:
            self._clear_deadline()  # the server holds the client back: no read deadline runs
        else:
            super()._reading(waiting)

    def _body_taken(self) -> None:
        """The app took what waited of its body: read on, unless the body being read (a
        pipelined request's, after it) is itself over the mark."""
        reading = self._reading_body
        if not self._paused_for_body or (reading is not None and reading.buffered > BODY_HIGH_WATER_BYTES):
            return
        self._paused_for_body = False
        transport = self.transport
        if transport is not None and not (self._paused_for_queue or self._write_paused or self._lingering):
            transport.resume_reading()
            self._arm_reading_deadline()

    def _next_in_queue(self) -> None:
        request_body, cycle = self._reading_body, self._cycle
        if request_body is not None and isinstance(cycle, HttpCycle) and cycle.request_body is request_body:
            # The app answered before reading all of its body: the rest is read and dropped,
            # so that the requests after it can be read.
            request_body.discard()
        # Reading may have paused for a body that is whole now and that the app answered
        # without taking: nothing waits for it any more.
        self._body_taken()
        super()._next_in_queue()

    def _body_broken(self) -> bool:
        """The body being read will never be whole (refused, or too slow): its app hears
        http.disconnect. False when the app's answer has begun, so that no error answer may
        follow it: the connection is cut instead."""
        request_body, self._reading_body = self._reading_body, None
        if request_body is None:
            return True
        request_body.failed = True
        cycle = self._cycle
        if isinstance(cycle, HttpCycle) and cycle.request_body is request_body:
            if cycle.complete:
                return True  # answered already: the error answer follows it, as for any request
            cycle.disconnect()  # what the app sends from now on is dropped
            if cycle.streaming:
                self.closing = True
                self._linger()
                return False
            cycle.complete = True
            self._busy = False  # the error answer is this request's answer, and goes now
        elif self._pending and getattr(self._pending[-1], "body_stream", None) is request_body:
            self._pending.pop()  # its app has not been called: it never will be
        return True

    def on_rejection(self, rejection: Rejection) -> None:
        if self._body_broken():
            super().on_rejection(rejection)
        else:
            self.state.stats.count_error(rejection.error_kind)

    def _write_and_close(self, response: Response) -> None:
        if self._body_broken():
            super()._write_and_close(response)

    def on_upgrade(self, rest: bytes) -> None:
        cycle = self._cycle
        if rest and isinstance(cycle, WebSocketCycle) and not cycle.accepted:
            self._upgrade_rest += rest
        else:
            super().on_upgrade(rest)

    def _scope(self, request: Request, kind: str) -> Scope:
        path = request.path
        return {
            "type": kind,
            "asgi": HTTP_ASGI,
            "http_version": request.http_version,
            "server": self._server,
            "client": self._client,
            "scheme": self._scheme[0] if kind == "http" else self._scheme[1],
            "method": request.method,
            "root_path": "",
            "path": unquote(path) if "%" in path else path,
            "raw_path": path.encode("latin-1"),
            "query_string": request.query.encode("latin-1"),
            "headers": [(name.lower(), value) for name, value in request.headers],
            "state": self._host.state.copy(),
            "extensions": self._extensions,
        }

    def _handle(self, request: Request, match: Any = None) -> None:
        host = self._host
        self._busy = True
        # The reader reports an upgrade request as not keep-alive: a plain request skips the look.
        if not request.keep_alive and is_websocket_upgrade(request):
            self._handle_websocket(request)
            return
        cycle = HttpCycle(self, request,
                          time.perf_counter_ns() if self.settings.processing_time_header else 0)
        self._cycle = cycle
        host.run(cycle, self._scope(request, "http"))

    def _handle_websocket(self, request: Request) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        socket = AppWebSocket(self.state, self.settings, WebSocketCycle(self, request))
        cycle = socket.cycle
        cycle.socket = socket
        if not socket.check_handshake(transport, request):
            self.closing = True  # the library answered the bad handshake (400, 426) and half-closed
            transport.close()
            return
        self._cycle = cycle
        scope = self._scope(request, "websocket")
        del scope["method"]
        scope["subprotocols"] = _subprotocols(request)
        self._host.run(cycle, scope)

    def _hand_over(self, socket: AppWebSocket, subprotocol: str | None,
                   headers: list[tuple[str, str]]) -> None:
        """The app accepted: the 101 goes out and the WebSocket connection takes the transport."""
        # From here on this object reads nothing: the upgraded connection counts itself.
        self.closing = True
        self._clear_deadline()
        self.state.connections.discard(self)
        socket.open(subprotocol, headers)
        rest, self._upgrade_rest = self._upgrade_rest, b""
        if rest:
            socket.receive(rest)

    def _refuse_upgrade(self) -> None:
        """websocket.close before accept: RFC 6455 section 4.2.2 lets the server refuse with any
        HTTP status; 403, as uvicorn answers it."""
        self._write_and_close(Response(b"", 403))
        cycle = self._cycle
        if cycle is not None:
            cycle.disconnect()



def serve_app(app: AsgiApp | str, lifespan: Lifespan = "auto") -> AsgiHost:
    """An AsgiHost for ``app`` (an app, or ``"module:attribute"``)."""
    found, name = load_app(app)
    return AsgiHost(found, name, lifespan)

"""One HTTP/1.1 connection: the shell around a request reader, answering in order.

The bytes are read by a ``RequestReader`` (lab/http/reader.py), which knows no socket and
no clock; this class owns what does: the transport, the deadlines and the queue of answers.
It is the server's hot path. It reads into a buffer of ``read_buffer_bytes``
(``asyncio.BufferedProtocol``), so the read size is a real, observable knob -- one buffer for
every connection of the loop, so an idle connection costs no buffer; it parses every
request (nothing is answered from a cache of earlier bytes); it answers pipelined requests
strictly in order (RFC 9112 section 9.3.2); and it stops reading while the peer is not reading
our answers (flow control), so a slow client cannot make us buffer without bound.

A hostile client meets limits that hold while bytes arrive, not only once a header or a body
is complete:

- a request head that grows past ``max_header_bytes`` is cut with 431 as it grows (the reader);
- each phase has a deadline -- headers, body, sending, idle -- and none runs while the
  server itself is the one not reading (flow control, or a full queue of pipelined requests);
- a head or a body must also arrive at a minimum average rate once a grace period has passed
  (Apache's mod_reqtimeout): a gap timeout alone lets a client trickle a byte just inside
  each gap and hold the connection for ever;
- an error answer ends in a lingering close: the answer, our half of the connection shut,
  then the client's remaining bytes read and dropped until it closes or ``LINGER_SECONDS``
  pass, so it sees the answer rather than a reset (RFC 9112 section 9.6).

One answer per request: an Upgrade or CONNECT is answered as plain HTTP and the connection
closed, unless a WebSocket route takes the transport over; ``100 Continue`` goes out before
a body the client waits to send, once no earlier answer is still owed.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from lab.http.messages import NO_PARAMS, Prebuilt, Request, Response, StreamingResponse
from lab.http.reader import BODY, HEAD, Phase, Rejection, RequestReader, scan_head
from lab.http.routing import RouteMatch, WebSocketHandler
from lab.http.sockets import apply_socket_options, change_socket_options, rearm_quickack
from lab.http.websocket import WebSocketConnection, is_websocket_upgrade
from lab.units import NS_PER_US

if TYPE_CHECKING:
    from lab.http.state import ServerState, Settings

__all__ = ["CONTINUE", "LINGER_SECONDS", "MAX_QUEUED_REQUESTS", "HttpConnection", "Waiting", "scan_head"]

# How many parsed requests may wait behind a slow (async) one before we stop reading.
MAX_QUEUED_REQUESTS = 64
# After an error answer, how long we keep reading (and dropping) what the client still sends.
LINGER_SECONDS = 2.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

class Waiting(enum.Enum):
    """What a connection's deadline is for: which timeout ends it, and how."""

    NOTHING = enum.auto()  # no deadline armed (answering, or the server paused reading)
    IDLE = enum.auto()  # between requests: the keep-alive timeout closes it quietly
    HEADERS = enum.auto()  # inside a request's head: the header timeout or minimum rate answers 408
    BODY = enum.auto()  # inside a body: a gap of the body timeout, or too slow a rate, answers 408
    SENDING = enum.auto()  # the client is not reading our answer: the send timeout aborts
    LINGERING = enum.auto()  # after an error answer: close when the client has not closed


# Module-level names for the hot path: looking a member up on an Enum class costs ~100 ns.
WAITING_IDLE, WAITING_HEADERS, WAITING_BODY = Waiting.IDLE, Waiting.HEADERS, Waiting.BODY


def _error_response(status: int, message: str) -> Response:
    return Response.text(message + "\n", status)


class HttpConnection(asyncio.BufferedProtocol):
    __slots__ = (
        "_body_of",
        "_busy",
        "_deadline_kind",
        "_drain_waiter",
        "_has_middleware",
        "_lingering",
        "_paused_for_body",
        "_paused_for_queue",
        "_peer_done",
        "_pending",
        "_phase_deadline",
        "_phase_started",
        "_plain_answers",
        "_send_mark",
        "_task",
        "_view",
        "_websocket",
        "_write_paused",
        "closing",
        "deadline",
        "reader",
        "requests_served",
        "settings",
        "sock",
        "state",
        "transport",
    )

    def __init__(self, state: ServerState) -> None:
        self.state = state
        # A reconfigure reaches open connections too (apply_settings): a live tuning session
        # sees a knob act at once, and the run's record marks when it changed.
        self.settings = settings = state.settings
        self._has_middleware = state.router.has_middleware
        # A constant answer may skip the Request only when nothing would look at it.
        self._plain_answers = not self._has_middleware and not (settings.processing_time_header
                                                                   or settings.metrics)
        # The loop's one read buffer, referenced (8 bytes a connection), not copied: read on
        # every read, an attribute of our own is a lookup less than through the state.
        self._view = state.read_view
        # scan_head is read here, not at import: a test or benchmark switches it off per connection.
        self.reader = RequestReader(self, max_header_bytes=settings.max_header_bytes,
                                    max_body_bytes=settings.max_body_bytes, scan=scan_head)
        self.transport: asyncio.Transport | None = None
        self.sock: Any = None
        self.requests_served = 0
        self.closing = False  # answered with "close" (or failed): nothing more will be answered
        self._peer_done = False  # the client half-closed: answer what is queued, then close
        self._lingering = False  # an error answer went out: drop input until the client closes
        self.deadline: float | None = None
        self._deadline_kind = Waiting.NOTHING
        # The head's or body's own timeout; ``deadline`` may come before it, when the
        # minimum rate is due to be checked (expire() tells the two apart).
        self._phase_deadline = 0.0
        self._phase_started = 0.0  # when the head or body being read began (or resumed)
        self._body_of = 0  # the reader's heads_completed when the body being timed began
        self._send_mark = 0  # bytes buffered for the client when the send deadline was armed
        self._pending: deque[Request | Response] = deque()
        self._busy = False  # an async handler or a stream is answering right now
        self._task: asyncio.Task[None] | None = None
        self._paused_for_queue = False
        # A hosted app has not taken the body read so far (lab/http/asgi.py): reading waits.
        self._paused_for_body = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._websocket: WebSocketConnection | None = None  # who took the transport after a 101

    # --- connection lifecycle -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        state, settings = self.state, self.settings
        state.connections.add(self)
        stats = state.stats
        stats.connections_open += 1
        stats.connections_total += 1
        self.sock = transport.get_extra_info("socket")
        self._apply_socket_options()
        if settings.max_connections is not None and stats.connections_open > settings.max_connections:
            stats.count_error("over_capacity")
            self._write_and_close(_error_response(503, "too many connections"))
            return
        self._set_deadline(WAITING_HEADERS, settings.header_timeout_seconds)

    def _apply_socket_options(self) -> None:
        if self.sock is not None:  # none when the protocol tests feed bytes directly
            apply_socket_options(self.sock, self.settings)

    def apply_settings(self, settings: Settings) -> None:
        """A reconfigure while this connection is open: socket knobs now, HTTP knobs from the
        next request on (a request being answered finishes as it began)."""
        self.settings = settings
        self._plain_answers = not self._has_middleware and not (settings.processing_time_header
                                                                   or settings.metrics)
        self.reader.max_header_bytes = settings.max_header_bytes
        self.reader.max_body_bytes = settings.max_body_bytes
        self._view = self.state.read_view  # a new size makes a new one (ServerState.use)
        if self.sock is not None:
            change_socket_options(self.sock, settings)

    def socket_options(self) -> dict[str, Any]:
        """The TCP options as the kernel reports them for this connection (not as asked)."""
        return {**self.settings.sockets.read_back(self.sock), "read_buffer_bytes": len(self.state.read_view)}

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        state.stats.connections_open -= 1
        self.closing = True
        self.deadline = None
        self._pending.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._wake_writer()

    def shut_down(self, websocket_code: int) -> None:
        """The server is stopping: close now when no answer is being made (FIN; a request
        still arriving is dropped, as uvicorn drops it), else after that answer, which says
        "Connection: close". Requests pipelined behind it are not answered."""
        self.closing = True
        if not self._busy and self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool:
        # The client has finished sending. Answer what is already queued, then close; with
        # nothing queued (or after an error answer) there is nothing to wait for.
        self._peer_done = True
        return not self._lingering and bool(self._busy or self._pending)

    # --- flow control: the deadlines follow who is waiting for whom ---------------------

    def pause_writing(self) -> None:
        self._write_paused = True
        transport = self.transport
        if transport is not None:
            transport.pause_reading()
            # From now on the client is the one not reading: only the send timeout runs.
            self._deadline_kind = Waiting.SENDING
            self._send_mark = transport.get_write_buffer_size()
            self.deadline = self.state.clock + self.settings.send_timeout_seconds

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None and not (self._paused_for_queue or self._paused_for_body):
            self.transport.resume_reading()
        self._wake_writer()
        self._arm_reading_deadline()
        if not self._busy:
            self._drain_queue()

    def _arm_reading_deadline(self) -> None:
        """After a pause the server caused, restart the deadline of whatever we now wait for."""
        settings = self.settings
        if self._lingering:
            self._set_deadline(Waiting.LINGERING, LINGER_SECONDS)
        elif self._write_paused:
            return  # the send deadline stays
        elif self._paused_for_queue or self._paused_for_body:
            self._clear_deadline()  # the server is busy: the client is not the one to blame
        elif (phase := self.reader.phase) is HEAD:
            self._phase_started = self.state.clock  # the pause does not count against its rate
            self._set_deadline(WAITING_HEADERS, settings.header_timeout_seconds)
        elif phase is BODY:
            self._phase_started = self.state.clock
            self._set_deadline(WAITING_BODY, settings.body_timeout_seconds)
        elif not self._busy and not self._pending:
            self._set_deadline(WAITING_IDLE, settings.keepalive_timeout_seconds)
        else:
            self._clear_deadline()

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        """Called by the server's sweep once ``deadline`` has passed."""
        kind, stats = self._deadline_kind, self.state.stats
        if (kind is WAITING_HEADERS or kind is WAITING_BODY) and self.state.clock < self._phase_deadline:
            self._check_rate(kind)
        elif kind is WAITING_HEADERS:
            stats.count_error("header_timeout")
            self._write_and_close(_error_response(408, "request headers took too long"))
        elif kind is WAITING_BODY:
            stats.count_error("body_timeout")
            self._write_and_close(_error_response(408, "request body stalled"))
        elif kind is Waiting.SENDING:
            self._expire_sending()
        elif kind is Waiting.LINGERING:
            self._clear_deadline()
            if self.transport is not None:
                self.transport.abort()  # the client would not stop sending: cut it off
        else:
            stats.keepalive_timeouts += 1
            self.closing = True
            self._clear_deadline()
            if self.transport is not None:
                self.transport.close()

    def _expire_sending(self) -> None:
        """The send timeout ran out: go on if the client read anything since, else give up."""
        transport = self.transport
        if transport is None:
            return
        buffered = transport.get_write_buffer_size()
        if buffered < self._send_mark:
            self._send_mark = buffered
            self.deadline = self.state.clock + self.settings.send_timeout_seconds
            return
        self.state.stats.count_error("send_timeout")
        self.closing = True
        self._clear_deadline()
        if self.sock is not None:
            # A plain close would leave the kernel holding the unsent bytes (an orphaned
            # socket in FIN_WAIT1, retrying for minutes against a zero window); SO_LINGER 0
            # makes the close a reset that frees them now and tells the client.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()  # drops what is buffered for this client in the process

    def _check_rate(self, kind: Waiting) -> None:
        """The minimum rate's check is due, before the phase's own timeout: 408 if the head or
        body has arrived slower than the minimum on average, else the next check."""
        settings = self.settings
        header = kind is WAITING_HEADERS
        minimum = settings.header_min_bytes_per_second if header else settings.body_min_bytes_per_second
        due = self._phase_deadline if minimum is None else self._rate_due(minimum)
        if self.state.clock < due:
            self.deadline = min(self._phase_deadline, due)
            return
        what = "header" if header else "body"
        self.state.stats.count_error(f"{what}_too_slow")
        self._write_and_close(_error_response(
            408, f"request {what} arrived slower than {minimum} bytes/s "
                 f"({what}_min_bytes_per_second)"))

    def _rate_due(self, minimum: int) -> float:
        """When the head or body read so far falls under ``minimum`` bytes/s on average: its
        bytes buy it time at that rate (mod_reqtimeout's MinRate), and never before the grace."""
        return self._phase_started + max(self.settings.min_rate_grace_seconds,
                                         self.reader.phase_bytes() / minimum)

    def _set_deadline(self, kind: Waiting, seconds: float) -> None:
        self._deadline_kind = kind
        self.deadline = self._phase_deadline = self.state.clock + seconds

    def _clear_deadline(self) -> None:
        self.deadline = None  # the sweep looks only at connections with a deadline

    # --- reading: the reader parses, and tells us through the RequestListener calls ------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view  # the loop's one buffer (ServerState.read_view), not a copy

    def buffer_updated(self, nbytes: int) -> None:
        stats = self.state.stats
        stats.reads += 1
        stats.bytes_received += nbytes
        if self.settings.quickack:
            rearm_quickack(self.sock)
        if self.closing:
            return  # answered "close", or failed: what follows is read only to be dropped
        # Nothing may keep a view of these bytes past this call: the next read, of any
        # connection, overwrites them. The reader copies what an unfinished request needs.
        waiting = self.reader.feed(self._view, nbytes)
        if waiting is not None:
            self._reading(waiting)

    def _reading(self, waiting: Phase) -> None:
        """A head began, or a body began or moved on, in this read: its deadline."""
        clock, settings = self.state.clock, self.settings
        if waiting is HEAD:
            self._deadline_kind = WAITING_HEADERS
            self._phase_started = clock
            self._phase_deadline = clock + settings.header_timeout_seconds
            minimum = settings.header_min_bytes_per_second
        else:  # until the body (if any) is complete
            self._deadline_kind = WAITING_BODY
            heads = self.reader.heads_completed
            if heads != self._body_of:  # the body of a new head: its rate is timed from now
                self._body_of = heads
                self._phase_started = clock
            self._phase_deadline = clock + settings.body_timeout_seconds
            minimum = settings.body_min_bytes_per_second
        self.deadline = self._phase_deadline if minimum is None else min(
            self._phase_deadline, self._rate_due(minimum))

    def on_continue_expected(self) -> None:
        # Only when no earlier answer is still owed: a 100 must not overtake them.
        if not (self._busy or self._pending or self._write_paused) and self.transport is not None:
            self._write(CONTINUE, 0)

    def on_rejection(self, rejection: Rejection) -> None:
        self.state.stats.count_error(rejection.error_kind)
        self._queue_or_send(_error_response(rejection.status, rejection.reason))

    def on_upgrade(self, rest: bytes) -> None:
        # On a WebSocket route the transport was handed over already, and ``rest`` is the
        # client's first frames; anywhere else the request was answered as plain HTTP with
        # "Connection: close" (RFC 9110 section 7.8), and ``rest`` is dropped.
        websocket = self._websocket
        if rest and websocket is not None and websocket.transport is not None:
            websocket.receive(rest)

    def on_request(self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]],
                   body: bytes, http_version: str, keep_alive: bool) -> bool:
        """A complete request: answer it now or queue it; True when nothing more will be."""
        self.deadline = None
        match = None
        if not (self._busy or self._write_paused or self._pending):  # nothing to answer first
            match = self.state.router.match(method, path)
            route = match.route
            if route is not None and route.answer is not None and self._plain_answers:
                # A constant answer needs nothing of the request but what was parsed here.
                self._send_answer(route.answer, method, keep_alive, http_version)
                return self.closing
        request = Request(method, path, query, headers, body, http_version, keep_alive, NO_PARAMS, self)
        if match is None:
            self._queue_or_send(request)
        else:
            self._handle(request, match)  # the common case, without the queue's two extra calls
        return self.closing

    # --- answering ----------------------------------------------------------------------

    def _queue_or_send(self, item: Request | Response) -> None:
        """Answer now, or after the requests already waiting (pipelining keeps order).

        While the peer is not reading (writes paused) answers wait too: producing them would
        only pile them up in our write buffer.
        """
        if self._busy or self._write_paused or self._pending:
            self._pending.append(item)
            if len(self._pending) >= MAX_QUEUED_REQUESTS and not self._paused_for_queue:
                self._paused_for_queue = True
                if self.transport is not None:
                    self.transport.pause_reading()
                if not self._write_paused:
                    self._clear_deadline()  # we stopped reading: no client timeout runs
        else:
            self._dispatch(item)

    def _dispatch(self, item: Request | Response) -> None:
        if isinstance(item, Response):  # a rejection queued behind earlier requests
            self._write_and_close(item)
        else:
            self._handle(item)

    def _handle(self, request: Request, match: RouteMatch | None = None) -> None:
        state = self.state
        settings = self.settings
        timed = settings.processing_time_header or settings.metrics
        started_ns = time.perf_counter_ns() if timed else 0
        if match is None:
            match = state.router.match(request.method, request.path)
        if match.route is None:
            if match.status == 405:
                allowed = ", ".join(match.allowed)
                response = Response(f"use {allowed}\n".encode(), 405, headers=[("Allow", allowed)])
            else:
                response = _error_response(404, f"no route for {request.path}")
            self._send(request, response, started_ns)
            return
        request.params = match.params
        if match.route.websocket is not None and is_websocket_upgrade(request):
            self._upgrade_websocket(request, match.route.websocket)
            return
        if self._has_middleware:
            for middleware in state.router.request_middleware:
                early = middleware(request)
                if early is not None:
                    self._send(request, early, started_ns)
                    return
        try:
            result = match.route.handler(request)
        except Exception as error:  # a broken handler must not take the connection down
            self._handler_failed(request, error)
            return
        if match.route.is_async:
            self._busy = True
            self._task = state.loop.create_task(self._finish_async(request, result, started_ns))
        elif type(result) is StreamingResponse:
            self._busy = True
            self._task = state.loop.create_task(self._stream(request, result, started_ns))
        else:
            self._send(request, result, started_ns)

    def _upgrade_websocket(self, request: Request, handler: WebSocketHandler) -> None:
        """Hand the transport to a WebSocket connection (it answers 101), or refuse the upgrade."""
        try:
            app = handler(request)
        except Exception as error:
            self._handler_failed(request, error)
            return
        if isinstance(app, Response):  # refused before the handshake (a bad path parameter)
            self.closing = True
            self._send(request, app, 0)
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        # From here on this object reads nothing: the upgraded connection counts itself.
        self.closing = True
        self._clear_deadline()
        self.state.connections.discard(self)
        websocket = WebSocketConnection(self.state, self.settings, app)
        if websocket.take_over(transport, request):
            self._websocket = websocket
        else:  # the library answered a bad handshake (400, 426) and half-closed
            self.state.connections.add(self)
            transport.close()

    def _handler_failed(self, request: Request, error: BaseException) -> None:
        self.state.stats.count_error("handler_error")
        self.state.log_handler_error(request, error)
        self.closing = True
        self._send(request, _error_response(500, "internal error"), 0)

    async def _finish_async(self, request: Request, awaitable: Any, started_ns: int) -> None:
        try:
            response = await awaitable
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._handler_failed(request, error)
        else:
            if type(response) is StreamingResponse:
                await self._stream(request, response, started_ns)
                return
            self._send(request, response, started_ns)
        self._next_in_queue()

    def _next_in_queue(self) -> None:
        """An async answer or a stream has finished: go on with the queue."""
        self._busy = False
        self._task = None
        self._drain_queue()

    def _drain_queue(self) -> None:
        while self._pending and not self._busy and not self._write_paused and not self.closing:
            self._dispatch(self._pending.popleft())
        if self._paused_for_queue and len(self._pending) < MAX_QUEUED_REQUESTS // 2:
            self._paused_for_queue = False
            if self.transport is not None and not (self._write_paused or self._paused_for_body):
                self.transport.resume_reading()
                self._arm_reading_deadline()
        if self._busy or (self._pending and not self.closing):
            return
        if self.closing or self._peer_done:
            if self.transport is not None and not self._lingering:
                self.transport.close()
        elif not self._write_paused:
            self._arm_reading_deadline()

    def _connection_line(self, keep_alive: bool, http_version: str, served: int) -> bytes:
        """The keep-alive or close header for the ``served``-th answer on this connection;
        ``settings.close_line`` when the connection ends after it."""
        settings = self.settings
        if keep_alive and settings.keepalive and not self.closing and (
                settings.keepalive_max_requests is None or served < settings.keepalive_max_requests):
            return settings.keep_line_http10 if http_version == "1.0" else settings.keep_line
        return settings.close_line

    def _send_answer(self, answer: Prebuilt, method: str, keep_alive: bool, http_version: str) -> None:
        """A route's constant answer, for a request nothing else needs to see."""
        served = self.requests_served + 1
        self.requests_served = served
        connection_line = self._connection_line(keep_alive, http_version, served)
        data = answer.encode(self.state.date_line, connection_line)
        body_length = len(answer.body)
        if method == "HEAD" and body_length:
            data, body_length = data[:-body_length], 0
        self._deliver(data, body_length, connection_line is not self.settings.close_line)

    def _send(self, request: Request, response: Any, started_ns: int) -> None:
        if self._has_middleware:
            for middleware in self.state.router.response_middleware:
                middleware(request, response)
        served = self.requests_served + 1
        self.requests_served = served
        connection_line = self._connection_line(request.keep_alive, request.http_version, served)
        date_line = self.state.date_line
        if started_ns:
            elapsed_ns = time.perf_counter_ns() - started_ns
            settings = self.settings
            if settings.metrics:
                self.state.durations.observe_ns(elapsed_ns)
            if settings.processing_time_header:
                date_line += b"X-Processing-Time: %dus\r\n" % (elapsed_ns // NS_PER_US)
        if type(response) is Prebuilt:
            body = response.body
            if started_ns:
                data = response.head + date_line + connection_line + b"\r\n" + body
            else:
                data = response.encode(date_line, connection_line)
        else:
            body = response.body
            data = response.fixed_head() + date_line + connection_line + b"\r\n" + body
        if request.method == "HEAD" and body:
            data = data[:-len(body)]
            body = b""
        self._deliver(data, len(body), connection_line is not self.settings.close_line)

    def _deliver(self, data: bytes, body_length: int, keep: bool) -> None:
        """Write one whole answer, then wait for the next request or close."""
        state, settings, transport = self.state, self.settings, self.transport
        stats = state.stats
        if settings.split_writes or transport is None:
            self._write(data, body_length)
        elif not transport.is_closing():  # _write's common case, one call fewer per answer
            transport.write(data)
            stats.bytes_sent += len(data)
        stats.requests += 1
        if keep:
            if not self._busy and not self._pending and not self._write_paused:
                self._deadline_kind = WAITING_IDLE
                self.deadline = state.clock + settings.keepalive_timeout_seconds
        else:
            self.closing = True
            if not self._busy and self.transport is not None:
                self.transport.close()

    def _write(self, data: bytes, body_length: int) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.settings.split_writes and body_length and body_length < len(data):
            # Two writes: with Nagle on, the kernel holds the second small segment until the
            # first is acknowledged, and the peer delays that ACK (~40 ms on Linux).
            transport.write(data[:-body_length])
            transport.write(data[-body_length:])
        else:
            transport.write(data)
        self.state.stats.bytes_sent += len(data)

    def _write_and_close(self, response: Response) -> None:
        """Send an error answer and close the connection without resetting it."""
        self.closing = True
        self._write(response.fixed_head() + self.state.date_line + self.settings.close_line + b"\r\n"
                    + response.body, len(response.body))
        self._linger()

    def _linger(self) -> None:
        """Shut our sending side, then read and drop until the client closes (or gives up).

        Closing a socket with unread bytes in its receive buffer makes the kernel send a
        reset, which can destroy our answer in flight; so the answer goes first, then a FIN,
        and the connection is closed only once the client has closed its side.
        """
        transport = self.transport
        if transport is None or transport.is_closing() or self._lingering:
            return
        self._lingering = True
        self._pending.clear()
        try:
            transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            transport.close()
            return
        if not self._write_paused:
            transport.resume_reading()  # keep draining what the client sends
        self._set_deadline(Waiting.LINGERING, LINGER_SECONDS)

    async def _stream(self, request: Request, response: StreamingResponse, started_ns: int) -> None:
        keep = self._start_stream(request, response.fixed_head(), request.keep_alive)
        try:
            if request.method == "HEAD":
                await _close_iterator(response.chunks)  # headers only: the body is not made
            elif not await self._stream_body(response):
                return  # the connection went away while the body was being sent
        except Exception as error:
            # Headers are gone already: all we can do is cut the stream, which the client
            # sees as an incomplete body.
            self.state.stats.count_error("handler_error")
            self.state.log_handler_error(request, error)
            self.closing = True
        self._end_stream(keep, started_ns)

    def _start_stream(self, request: Request, fixed_head: bytes, keep_alive: bool) -> bool:
        """Write a streamed answer's head; True when the connection stays open after it."""
        served = self.requests_served + 1
        self.requests_served = served
        connection_line = self._connection_line(keep_alive, request.http_version, served)
        self._write(fixed_head + self.state.date_line + connection_line + b"\r\n", 0)
        return connection_line is not self.settings.close_line

    def _end_stream(self, keep: bool, started_ns: int = 0) -> None:
        """A streamed answer is complete (or cut): count it (its duration runs to its last
        byte, as a dashboard's middleware measures it) and go on with the queue."""
        self.state.stats.requests += 1
        if started_ns and self.settings.metrics:
            self.state.durations.observe_ns(time.perf_counter_ns() - started_ns)
        if not keep:
            self.closing = True
        self._next_in_queue()

    async def _write_chunk(self, data: bytes) -> bool:
        """Write part of a streamed body, at the client's pace; False once the connection is gone."""
        self._write(data, 0)
        if self._write_paused:
            await self._drained()
        else:
            # A client that reads as fast as we write never pauses us, and a producer of
            # chunks that never waits would then keep the loop from every other connection
            # until the whole body is out: give them a turn per chunk.
            await asyncio.sleep(0)
        return self.transport is not None and not self.transport.is_closing()

    async def _stream_body(self, response: StreamingResponse) -> bool:
        """Write the chunks as the client reads them; False if the connection closed meanwhile."""
        chunked = response.content_length is None
        sent = 0
        async for chunk in response.chunks:
            sent += len(chunk)
            if not await self._write_chunk(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked and chunk
                                           else chunk):
                return False
        if chunked:
            self._write(b"0\r\n\r\n", 0)
        elif sent != response.content_length:
            raise ValueError(f"the stream sent {sent} bytes after announcing {response.content_length}")
        return True

    async def _drained(self) -> None:
        self._drain_waiter = self.state.loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None


async def _close_iterator(chunks: Any) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()

"""One HTTP/1.1 connection: parsing with httptools, answering in order, closing when told.

This is the server's hot path. It reads into a buffer of ``read_buffer_bytes`` it owns
(``asyncio.BufferedProtocol``), so the read size is a real, observable knob; it answers
pipelined requests strictly in order (RFC 9112 section 9.3.2); and it stops reading while the
peer is not reading our answers (flow control), so a slow client cannot make us buffer
without bound.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from lab.http.messages import NO_PARAMS, Prebuilt, Request, Response, StreamingResponse
from lab.units import NS_PER_US

if TYPE_CHECKING:
    from lab.http.core import ServerState

# How many parsed requests may wait behind a slow (async) one before we stop reading.
MAX_QUEUED_REQUESTS = 64
# Distinct request byte strings the repeat cache remembers before it starts again.
REPEAT_CACHE_ENTRIES = 1024

_CONTENT_LENGTH = b"content-length"


class Waiting(enum.Enum):
    """What a connection's deadline is for: which timeout ends it, and how."""

    NOTHING = enum.auto()  # no deadline armed
    IDLE = enum.auto()  # between requests: the keep-alive timeout closes it quietly
    HEADERS = enum.auto()  # inside a request's head: the header timeout answers 408


# Module-level names for the hot path: looking a member up on an Enum class costs ~100 ns.
WAITING_IDLE, WAITING_HEADERS = Waiting.IDLE, Waiting.HEADERS


class _Rejected(Exception):
    """Raised inside a parser callback to abandon a request that has already been answered."""


def _error_response(status: int, message: str) -> Response:
    return Response.text(message + "\n", status)


class HttpConnection(asyncio.BufferedProtocol):
    __slots__ = (
        "_body_bytes",
        "_body_parts",
        "_buffer",
        "_busy",
        "_cache_offer",
        "_deadline_kind",
        "_drain_waiter",
        "_header_bytes",
        "_headers",
        "_in_message",
        "_messages_in_read",
        "_paused_for_queue",
        "_peer_done",
        "_pending",
        "_rejection",
        "_repeat_cache",
        "_repeat_candidate",
        "_task",
        "_url",
        "_view",
        "_write_paused",
        "closing",
        "deadline",
        "parser",
        "requests_served",
        "settings",
        "sock",
        "state",
        "transport",
    )

    def __init__(self, state: ServerState) -> None:
        self.state = state
        # A connection keeps the settings it was accepted with: a reconfigure applies to
        # connections opened after it, so one experiment never mixes two configurations.
        self.settings = state.settings
        self._buffer = bytearray(self.settings.read_buffer_bytes)
        self._view = memoryview(self._buffer)
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.sock: Any = None
        self.requests_served = 0
        self.closing = False  # answered with "close" (or failed): nothing more will be answered
        self._peer_done = False  # the client half-closed: answer what is queued, then close
        self.deadline: float | None = None
        self._deadline_kind = Waiting.NOTHING
        self._pending: deque[Request | Response] = deque()
        self._busy = False  # an async handler or a stream is answering right now
        self._task: asyncio.Task[None] | None = None
        self._paused_for_queue = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._rejection: Response | None = None
        self._in_message = False
        self._messages_in_read = 0
        # The repeat cache holds answers that are a pure function of the request bytes; any
        # middleware, or a header that differs per request, makes that untrue.
        use_cache = (self.settings.repeat_cache and not self.settings.processing_time_header
                     and not state.router.has_middleware)
        self._repeat_cache: dict[bytes, tuple[Request, Prebuilt]] | None = (
            state.repeat_cache if use_cache else None)
        self._repeat_candidate: bytes | None = None
        self._cache_offer: tuple[Request, Prebuilt] | None = None
        self._reset_request()

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
        settings, sock = self.settings, self.sock
        # uvloop and asyncio both turn TCP_NODELAY on for every accepted socket; set it
        # either way so that "off" really means Nagle's algorithm is on.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if settings.nodelay else 0)
        if settings.linger_seconds is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, settings.linger_seconds))
        if settings.quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def socket_options(self) -> dict[str, Any]:
        """The TCP options as the kernel reports them for this connection (not as asked)."""
        sock = self.sock
        onoff, seconds = struct.unpack("ii", sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
        return {
            "nodelay": bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)),
            "linger": {"enabled": bool(onoff), "seconds": seconds},
            "send_buffer_bytes": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
            "recv_buffer_bytes": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            "read_buffer_bytes": len(self._buffer),
            "quickack": bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)),
        }

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        state.stats.connections_open -= 1
        self.closing = True
        self.deadline = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._wake_writer()

    def eof_received(self) -> bool:
        # The client has finished sending. Answer what is already queued, then close; with
        # nothing queued there is nothing to wait for.
        self._peer_done = True
        return bool(self._busy or self._pending)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None and not self._paused_for_queue:
            self.transport.resume_reading()
        self._wake_writer()
        if not self._busy:
            self._drain_queue()

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        """Called by the server's sweep once ``deadline`` has passed."""
        if self._deadline_kind is WAITING_HEADERS:
            self.state.stats.count_error("header_timeout")
            self._write_and_close(_error_response(408, "request headers took too long"))
        else:
            self.state.stats.keepalive_timeouts += 1
            self.closing = True
            if self.transport is not None:
                self.transport.close()

    def _set_deadline(self, kind: Waiting, seconds: float) -> None:
        self._deadline_kind = kind
        self.deadline = self.state.clock + seconds

    # --- reading ------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        stats = self.state.stats
        stats.reads += 1
        stats.bytes_received += nbytes
        if self.settings.quickack:
            # Linux clears TCP_QUICKACK as soon as it has acknowledged: re-arm it per read.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if self.closing:
            return
        cache = self._repeat_cache
        if (cache is not None and not self._in_message and not self._busy and not self._pending
                and not self._write_paused):
            data = bytes(self._view[:nbytes])
            cached = cache.get(data)
            if cached is not None:
                self._send(cached[0], cached[1], 0)
                return
            self._repeat_candidate = data
            self._messages_in_read = 0
            self._cache_offer = None
        else:
            self._repeat_candidate = None
        try:
            self.parser.feed_data(self._view[:nbytes])
            if self._cache_offer is not None:
                self._remember_answer()
        except httptools.HttpParserUpgrade:
            self._reject(_error_response(400, "protocol upgrades are not supported"), "bad_request")
        except httptools.HttpParserError as error:
            rejection = self._rejection
            if rejection is None:
                self._reject(_error_response(400, f"malformed request: {error}"), "bad_request")
            else:
                self._queue_or_send(rejection)

    def _remember_answer(self) -> None:
        """Cache the answer if this read held exactly one whole request, and nothing else."""
        offer, self._cache_offer = self._cache_offer, None
        candidate, self._repeat_candidate = self._repeat_candidate, None
        cache = self._repeat_cache
        if (offer is None or candidate is None or cache is None or self._in_message
                or self._messages_in_read != 1):
            return
        if len(cache) >= REPEAT_CACHE_ENTRIES:
            cache.clear()
        offer[0].connection = None  # the cache must not keep this connection alive
        cache[candidate] = offer

    def _reject(self, response: Response, error_kind: str) -> None:
        self.state.stats.count_error(error_kind)
        self._queue_or_send(response)

    def _reset_request(self) -> None:
        self._url: bytes | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body_parts: list[bytes] = []
        self._header_bytes = 0
        self._body_bytes = 0

    # httptools callbacks, in the order they come

    def on_message_begin(self) -> None:
        self._in_message = True
        self._messages_in_read += 1
        self._reset_request()
        self._set_deadline(WAITING_HEADERS, self.settings.header_timeout_seconds)

    def on_url(self, url: bytes) -> None:
        # A URL split across two reads arrives in two calls.
        self._url = url if self._url is None else self._url + url
        self._header_bytes += len(url)
        if self._header_bytes > self.settings.max_header_bytes:
            self._abandon(414, "request target too long", "uri_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.settings.max_header_bytes:
            self._abandon(431, "request header fields too large", "header_too_large")
        if len(name) == 14 and name.lower() == _CONTENT_LENGTH and value.isdigit() \
                and int(value) > self.settings.max_body_bytes:
            self._abandon(413, f"body over {self.settings.max_body_bytes} bytes", "body_too_large")

    def on_headers_complete(self) -> None:
        self.deadline = None

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.settings.max_body_bytes:  # chunked bodies have no length up front
            self._abandon(413, f"body over {self.settings.max_body_bytes} bytes", "body_too_large")
        self._body_parts.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        parser = self.parser
        url = self._url or b"/"
        path, _, query = url.partition(b"?")
        parts = self._body_parts
        request = Request(
            parser.get_method().decode("ascii"), path.decode("latin-1"), query.decode("latin-1"),
            self._headers, parts[0] if len(parts) == 1 else b"".join(parts),
            parser.get_http_version(), parser.should_keep_alive(), NO_PARAMS, self)
        if self._busy or self._write_paused or self._pending:
            self._queue_or_send(request)
        else:
            self._handle(request)  # the common case, without the queue's two extra calls

    def _abandon(self, status: int, message: str, error_kind: str) -> None:
        self.state.stats.count_error(error_kind)
        self._rejection = _error_response(status, message)
        raise _Rejected(message)

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
        else:
            self._dispatch(item)

    def _dispatch(self, item: Request | Response) -> None:
        if isinstance(item, Response):  # a rejection queued behind earlier requests
            self._write_and_close(item)
        else:
            self._handle(item)

    def _handle(self, request: Request) -> None:
        state = self.state
        started_ns = time.perf_counter_ns() if self.settings.processing_time_header else 0
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
            if match.route.pure and self._repeat_candidate is not None and type(result) is Prebuilt:
                self._cache_offer = (request, result)
            self._send(request, result, started_ns)

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
            if self.transport is not None and not self._write_paused:
                self.transport.resume_reading()
        if self._busy or (self._pending and not self.closing):
            return
        if self.closing or self._peer_done:
            if self.transport is not None:
                self.transport.close()
        else:
            self._set_deadline(WAITING_IDLE, self.settings.keepalive_timeout_seconds)

    def _connection_line(self, request: Request, served: int) -> tuple[bytes, bool]:
        """The keep-alive or close header for this response, and whether to keep the connection."""
        settings = self.settings
        keep = (request.keep_alive and settings.keepalive and not self.closing
                and (settings.keepalive_max_requests is None
                     or served < settings.keepalive_max_requests))
        if not keep:
            return settings.close_line, False
        if request.http_version == "1.0":
            return settings.keep_line_http10, True
        return settings.keep_line, True

    def _send(self, request: Request, response: Any, started_ns: int) -> None:
        for middleware in self.state.router.response_middleware:
            middleware(request, response)
        served = self.requests_served + 1
        self.requests_served = served
        connection_line, keep = self._connection_line(request, served)
        date_line = self.state.date_line
        if started_ns:
            date_line += b"X-Processing-Time: %dus\r\n" % ((time.perf_counter_ns() - started_ns) // NS_PER_US)
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
        self._write(data, len(body))
        stats = self.state.stats
        stats.requests += 1
        if keep:
            if not self._busy and not self._pending:
                self._set_deadline(WAITING_IDLE, self.settings.keepalive_timeout_seconds)
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
        self.closing = True
        self._write(response.fixed_head() + self.state.date_line + self.settings.close_line + b"\r\n"
                    + response.body, len(response.body))
        if self.transport is not None:
            self.transport.close()

    async def _stream(self, request: Request, response: StreamingResponse, started_ns: int) -> None:
        served = self.requests_served + 1
        self.requests_served = served
        connection_line, keep = self._connection_line(request, served)
        self._write(response.fixed_head() + self.state.date_line + connection_line + b"\r\n", 0)
        try:
            async for chunk in response.chunks:
                if chunk:
                    self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk), 0)
                if self._write_paused:
                    await self._drained()
                if self.transport is None or self.transport.is_closing():
                    return
            self._write(b"0\r\n\r\n", 0)
        except Exception as error:
            # Headers are gone already: all we can do is cut the stream, which the client
            # sees as an incomplete chunked body.
            self.state.stats.count_error("handler_error")
            self.state.log_handler_error(request, error)
            self.closing = True
        self.state.stats.requests += 1
        if not keep:
            self.closing = True
        self._next_in_queue()

    async def _drained(self) -> None:
        self._drain_waiter = self.state.loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

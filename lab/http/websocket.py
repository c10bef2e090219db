"""WebSocket connections: what an ``HttpConnection`` hands its transport to after a 101.

The protocol itself -- handshake checks, framing, masking, fragmentation, ping/pong, the
close handshake, permessage-deflate, and the close code for bad input (1002 protocol error,
1009 message too big) -- is the ``websockets`` library's
Sans-I/O ``ServerProtocol``, fed from this asyncio protocol on the server's own loop (the
design of uvicorn's ``websockets_sansio_impl``): no second loop, no thread.

What this module adds is the lab's side: a read buffer of ``ws_buffer_size`` (the seed
article's knob), ``split_writes`` applied to frames (header and payload as two writes, so
Nagle's algorithm holds the payload back), an idle timeout through the server's deadline
sweep, the UTF-8 check of text messages that the Sans-I/O layer leaves to its user (1007),
and the routes' behaviour (:class:`WebSocketApp`).

It also decides how much of a read the library is given at once. A read is cut before each
control frame, so that the messages before a close (or a ping) are answered before the
library queues its reply to it; and after a bounded number of frames the rest of the read
waits for the loop's next turn, so that one client sending thousands of tiny frames per read
does not hold up every other connection (RFC 6455 leaves both to the implementation).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.speedups import apply_mask

from lab.http.messages import Request, WebSocketApp
from lab.http.sockets import change_socket_options, rearm_quickack

if TYPE_CHECKING:
    from lab.http.state import ServerState, Settings

# After we sent a close frame, how long the client has to answer it before we cut the
# connection (RFC 6455 section 7.1.1: the server should close the TCP connection first).
CLOSE_TIMEOUT_SECONDS = 2.0
# First header byte of a final, uncompressed text or binary frame (FIN set, RSV clear).
_FIN_TEXT, _FIN_BINARY = 0x80 | int(Opcode.TEXT), 0x80 | int(Opcode.BINARY)
_MASKED = 0x80
# The fast path takes frames with a 7-bit length: 2 header bytes, then the 4-byte mask.
_SMALL_LIMIT = 126
_SMALL_CLIENT_HEADER = 6
# Frames handed to the library per turn of the loop. It parses a frame in Python, ~9 us each
# for empty fragments (measured 2026-12-07: one 64 KiB read of them took 100 ms), so a read
# of tiny frames held every other connection up for the whole read; 128 frames is ~1 ms,
# and a read of ordinary messages is far below it and takes no extra turn.
FRAMES_PER_TURN = 128
# The first header byte's opcode bit that marks a control frame (close, ping, pong: 0x8-0xF).
_CONTROL = 0x08


def is_websocket_upgrade(request: Request) -> bool:
    """``Upgrade: websocket`` on a GET (RFC 6455 section 4.1); anything else gets 426."""
    upgrade = request.header("upgrade")
    return request.method == "GET" and upgrade is not None and upgrade.strip().lower() == "websocket"


def _extensions(settings: Settings) -> list[ServerExtensionFactory] | None:
    if not settings.ws_compression:
        return None
    # The level trades CPU for bytes; no context takeover would cost ratio on small messages.
    return [ServerPerMessageDeflateFactory(compress_settings={"level": settings.ws_compression_level})]


def _request_bytes(request: Request) -> bytes:
    target = request.path + ("?" + request.query if request.query else "")
    head = b"".join(name + b": " + value + b"\r\n" for name, value in request.headers)
    return b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\n" + head + b"\r\n"


def speaks_http11(http_version: str) -> bool:
    """RFC 6455 section 4.1: the opening handshake is an HTTP/1.1 request (or later)."""
    major, _, minor = http_version.partition(".")
    return major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= (1, 1)


def _is_utf8(payload: bytes) -> bool:
    """RFC 6455 section 8.1: a text message that is not UTF-8 fails the connection (1007)."""
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True


def _frame_header_length(frame: bytes) -> int:
    """Bytes of an unmasked (server) frame's header: 2, 4 or 10 (RFC 6455 section 5.2)."""
    length = frame[1] & 0x7F
    return 2 if length < 126 else 4 if length == 126 else 10


class WebSocketConnection(asyncio.BufferedProtocol):
    """One upgraded connection: bytes in to the Sans-I/O protocol, its output out.

    A fast path handles the common case of an echo-style exchange without the library: a read
    that is exactly one small, final, masked, uncompressed text or binary frame, arriving at
    a frame boundary while no fragmented message is open. It is unmasked here (the library's
    own C ``apply_mask``), text is checked to be UTF-8, and the answer's frame (unmasked, a
    2-byte header) is built here too. Measured here (2026-11-27, the echo's Python alone, fed
    ``buffer_updated`` in a loop without sockets), a 16-byte echo took 12.1 us through the
    library and 1.7 us on this path; everything else -- the handshake, control frames, fragments, larger
    or compressed frames, any frame that is not exactly one read, bad input -- goes to the
    library, which is why the path must know where the library's frames end (``_skip``,
    ``_head``): a read may only be taken as a frame if no earlier frame is still incomplete.
    """

    def __init__(self, state: ServerState, settings: Settings, app: WebSocketApp) -> None:
        self.state = state
        self.settings = settings
        self.app = app
        self.protocol = ServerProtocol(extensions=_extensions(settings),
                                       max_size=settings.ws_max_message_bytes)
        self._buffer = bytearray(settings.ws_buffer_size)
        self._view = memoryview(self._buffer)
        self.transport: asyncio.Transport | None = None
        self._sock: Any = None  # for the per-read quick-ACK; none when tests feed bytes directly
        self.deadline: float | None = None
        self.messages_received = 0
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._message_began = 0.0  # the clock when the open fragmented message's first frame came
        self._failed = False  # bad input closed the connection (counted once)
        self._fast = False  # open, uncompressed, no fragmented message: small frames skip the library
        self._skip = 0  # payload bytes of the library's current frame still to come
        self._head = b""  # the start of a frame header the library has not seen whole yet
        # Read but not yet handed to the library, from _pending_from on: waits for the next
        # turn (an offset, not a slice, so that a large read is not copied at every turn).
        self._pending = b""
        self._pending_from = 0
        self._turn: asyncio.Handle | None = None  # the next turn's call, while one is due
        self._writing_paused = False  # the client does not read its answers (flow control)
        self._reading = True
        self._tasks: set[asyncio.Task[None]] = set()
        self._answer: WsResponse | None = None  # the 101 a checked handshake will get

    # --- the handover -------------------------------------------------------------------

    def take_over(self, transport: asyncio.Transport, request: Request) -> bool:
        """Answer the upgrade ``request`` on ``transport``; True when the connection is open."""
        if not self.check_handshake(transport, request):
            return False
        self.open()
        return True

    def check_handshake(self, transport: asyncio.Transport, request: Request) -> bool:
        """Read the upgrade ``request``; a bad one is answered (400, 426) and False returned.

        Apart from :meth:`open` for a hosted ASGI app, which decides between the two.
        """
        self.transport = transport
        self._sock = transport.get_extra_info("socket")
        protocol = self.protocol
        # httptools has consumed the request; the library's parser must see it too (it
        # starts in the handshake state), so it gets the request again as bytes, as uvicorn
        # does when it hands an upgrade over.
        protocol.receive_data(_request_bytes(request))
        handshake = next((e for e in protocol.events_received() if isinstance(e, WsRequest)), None)
        answer = protocol.accept(handshake) if handshake is not None else None
        if answer is not None and answer.status_code == 101 and not speaks_http11(request.http_version):
            # The library takes an HTTP/1.0 request line as a handshake; RFC 6455 does not.
            answer = protocol.reject(
                400, f"a WebSocket handshake must be an HTTP/1.1 request, not HTTP/{request.http_version}\n")
        if answer is None or answer.status_code != 101:
            if answer is not None:
                protocol.send_response(answer)
            self._flush()
            self.state.stats.count_error("ws_bad_handshake")
            return False
        self._answer = answer
        return True

    def open(self, subprotocol: str | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        """Send the 101 for a checked handshake, with an app's subprotocol and extra headers."""
        answer, transport = self._answer, self.transport
        assert answer is not None and transport is not None
        if subprotocol is not None:
            answer.headers["Sec-WebSocket-Protocol"] = subprotocol
        for name, value in headers or ():
            answer.headers[name] = value
        self.protocol.send_response(answer)
        self._flush()
        transport.set_protocol(self)
        self._update_fast_path()
        self.state.connections.add(self)
        self._idle()
        self.app.on_open(self)

    def apply_settings(self, settings: Settings) -> None:
        """A reconfigure while this connection is open: the socket knobs and split_writes now;
        the WebSocket knobs (buffer, limits, compression) were agreed at the handshake."""
        self.settings = settings
        if self._sock is not None:
            change_socket_options(self._sock, settings)

    # --- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # only via take_over in practice

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        stats = self.state.stats
        stats.reads += 1
        stats.bytes_received += nbytes
        if self.settings.quickack and self._sock is not None:
            rearm_quickack(self._sock)
        buffer = self._buffer
        if (self._fast and _SMALL_CLIENT_HEADER <= nbytes < _SMALL_CLIENT_HEADER + _SMALL_LIMIT
                and (buffer[0] == _FIN_TEXT or buffer[0] == _FIN_BINARY)
                and buffer[1] == _MASKED | (nbytes - _SMALL_CLIENT_HEADER)
                and nbytes - _SMALL_CLIENT_HEADER <= self.settings.ws_max_message_bytes
                and not self._skip and not self._head):
            view = self._view
            payload = apply_mask(view[_SMALL_CLIENT_HEADER:nbytes], buffer[2:_SMALL_CLIENT_HEADER])
            text = buffer[0] == _FIN_TEXT
            if not text or _is_utf8(payload):
                self.deadline = self.state.clock + self.settings.ws_idle_timeout_seconds
                self._message(text, payload)
                return
        self.receive(bytes(self._view[:nbytes]))

    # Flow control: a client that does not read its echoes would make us buffer them without
    # bound; while the transport's write buffer is over its high-water mark, we stop reading.
    # Our own backlog (bytes waiting for their turn) stops reading too: both must be clear.
    def pause_writing(self) -> None:
        self._writing_paused = True
        self._read_when_clear()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._read_when_clear()
        self._next_turn()

    def _read_when_clear(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        reading = not self._writing_paused and not self._pending
        if reading != self._reading:
            self._reading = reading
            if reading:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def eof_received(self) -> bool:
        # Reading is paused while bytes are pending, so the end comes after all of them.
        self.protocol.receive_eof()
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        state.stats.connections_open -= 1
        self.deadline = None
        self.transport = None
        self._pending, self._pending_from = b"", 0
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None
        for task in list(self._tasks):
            task.cancel()

    # --- frames in ----------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Bytes from the client: the library parses them, we act on the messages."""
        if self._pending:  # earlier bytes still wait for their turn: these go behind them
            self._pending = self._pending[self._pending_from:] + data
            self._pending_from = 0
            return
        self._pending = data
        self._take_turn()

    def _take_turn(self) -> None:
        """Hand the library up to FRAMES_PER_TURN frames of what is pending, in order."""
        self._turn = None
        data, position = self._pending, self._pending_from
        self._pending, self._pending_from = b"", 0
        if self.transport is None or not data:
            return
        protocol = self.protocol
        # Answers made while the library's events are handled go through the library too,
        # so they stay in order behind the pongs and closes it has queued.
        self._fast = False
        budget = FRAMES_PER_TURN
        while position < len(data) and budget > 0 and self._reads_on():
            cut, frames, bad_length = self._cut(data, position, budget)
            budget -= frames
            if cut > position:
                self._feed(data[position:cut])
            position = cut
            if bad_length and protocol.state is State.OPEN:
                # RFC 6455 section 5.2: "the most significant bit MUST be 0" -- a protocol
                # error, which the library would take for a message too big (1009).
                self._fail(CloseCode.PROTOCOL_ERROR, "64-bit payload length with its top bit set")
        if self._reads_on() and position < len(data):
            self._pending, self._pending_from = data, position
        # else: what follows the client's close is not read (RFC 6455 section 5.5.1); the
        # library would discard it too.
        if protocol.parser_exc is not None and not self._failed:
            # The library closed the connection for bad input (1002, 1007, 1009): count it
            # by close code, once.
            self._failed = True
            sent = protocol.close_sent
            self.state.stats.count_error(f"ws_close_{sent.code if sent is not None else 0}")
        self._flush()
        self._update_fast_path()
        if self.protocol.state is State.OPEN:
            self._idle()
        self._read_when_clear()
        self._next_turn()

    def _reads_on(self) -> bool:
        """Frames are still read: open, or closing from our side -- an app's close, not a failure
        -- with the client's close not in yet (after sending a close an endpoint reads on until
        the other's, RFC 6455 section 5.5.1; after failing the connection it reads nothing)."""
        protocol = self.protocol
        if protocol.state is State.OPEN:
            return True
        return (protocol.state is State.CLOSING and protocol.close_rcvd is None and not self._failed
                and protocol.parser_exc is None)

    def _next_turn(self) -> None:
        """What is left of a read waits for the loop's next turn (other connections go first)."""
        if self._turn is not None or self.transport is None:
            return
        if self._pending and not self._writing_paused:
            self._turn = self.state.loop.call_soon(self._take_turn)

    def _feed(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                if self._failed:
                    break
                self._on_frame(event)

    def _update_fast_path(self) -> None:
        protocol = self.protocol
        self._fast = (protocol.state is State.OPEN and not protocol.extensions and not self._fragments
                      and not self._pending)

    def _cut(self, data: bytes, start: int, budget: int) -> tuple[int, int, bool]:
        """Where the library's next helping of ``data`` from ``start`` ends: before a control
        frame that does not begin it, after ``budget`` frame headers, or at the end; and it
        tracks where the library's frames end (RFC 6455 section 5.2 lengths).

        Returns (the end, the frame headers in the helping, whether it stopped before a
        64-bit length with its top bit set)."""
        end = len(data)
        position = start + min(self._skip, end - start)
        self._skip -= position - start
        frames = 0
        while position < end and frames < budget:
            known = len(self._head)
            head = self._head + data[position:position + 14]
            if not known and head[0] & _CONTROL and position > start:
                return position, frames, False
            if len(head) < 2:
                self._head = head
                return end, frames, False
            length = head[1] & 0x7F
            size = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if head[1] & 0x80 else 0)
            if len(head) < size:
                self._head = head
                return end, frames, False
            if length == 127 and head[2] & 0x80:
                return position, frames, True
            if length >= 126:
                length = int.from_bytes(head[2:4 if length == 126 else 10], "big")
            self._head = b""
            frames += 1
            position += size - known
            taken = min(length, end - position)
            position += taken
            self._skip = length - taken
        return position, frames, False

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._checked_message(opcode is Opcode.TEXT, bytes(frame.data))
            else:
                self._fragment_text = opcode is Opcode.TEXT
                self._fragments = [bytes(frame.data)]
                self._message_began = self.state.clock
        elif opcode is Opcode.CONT:
            # The library has checked the sequence and the total size (max_size) already;
            # the number of fragments and the time they take are ours to bound.
            fragments = self._fragments
            fragments.append(bytes(frame.data))
            settings = self.settings
            if len(fragments) > settings.ws_max_fragments:
                self._fail(CloseCode.POLICY_VIOLATION,
                           f"a message in more than ws_max_fragments={settings.ws_max_fragments} frames")
            elif self._message_overdue():
                self._fail(CloseCode.POLICY_VIOLATION, "a message took longer than "
                           f"ws_message_timeout_seconds={settings.ws_message_timeout_seconds:g}")
            elif frame.fin:
                payload, self._fragments = b"".join(fragments), []
                self._checked_message(self._fragment_text, payload)
        # PING is answered with a PONG and CLOSE with a CLOSE by the library itself.

    def _message_overdue(self) -> bool:
        return bool(self._fragments) and (
            self.state.clock - self._message_began >= self.settings.ws_message_timeout_seconds)

    def _checked_message(self, text: bool, payload: bytes) -> None:
        """A message the library framed: text must still be UTF-8, which it leaves to us."""
        if text and not _is_utf8(payload):
            self._fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
            return
        self._message(text, payload)

    def _fail(self, code: CloseCode, reason: str) -> None:
        """Close for bad input with ``code``, counted by it; the library discards what follows."""
        self.protocol.fail(code, reason)
        self._failed = True
        self._fragments = []
        self.state.stats.count_error(f"ws_close_{int(code)}")

    def _message(self, text: bool, payload: bytes) -> None:
        self.messages_received += 1
        self.state.stats.requests += 1
        self.app.on_message(self, text, payload)

    # --- frames out ---------------------------------------------------------------------

    def send(self, text: bool, payload: bytes) -> None:
        """Send one message (a no-op once the connection is closing)."""
        if self._fast and len(payload) < _SMALL_LIMIT:
            # The fast path's answer: a final unmasked frame with a 7-bit length.
            self._write_frame(bytes((_FIN_TEXT if text else _FIN_BINARY, len(payload))), payload)
            return
        protocol = self.protocol
        if protocol.state is not State.OPEN:
            return
        if text:
            protocol.send_text(payload)
        else:
            protocol.send_binary(payload)
        self._flush()

    def _write_frame(self, header: bytes, payload: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.settings.split_writes and payload:
            transport.write(header)  # see _flush: Nagle holds the payload back
            transport.write(payload)
        else:
            transport.write(header + payload)
        self.state.stats.bytes_sent += len(header) + len(payload)

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
            self._update_fast_path()

    def shut_down(self, code: int) -> None:
        """The server is stopping (1001) or restarting (1012): a close frame that says so; the
        server waits a little for the client's answer, as after any close it sends."""
        self.close(code, "server restarting" if code == CloseCode.SERVICE_RESTART else "server stopping")

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` for this connection; it is cancelled when the connection goes."""
        task = self.state.loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        split = self.settings.split_writes
        sent = 0
        for data in self.protocol.data_to_send():
            if not data:  # the library's way of saying: half-close now
                if not transport.is_closing() and transport.can_write_eof():
                    transport.write_eof()
                continue
            if split and len(data) > 2:
                # Header and payload as two writes: with Nagle on, the payload waits for
                # the ACK of the header, which the client delays (~40 ms on Linux).
                header = _frame_header_length(data)
                transport.write(data[:header])
                transport.write(data[header:])
            else:
                transport.write(data)
            sent += len(data)
        self.state.stats.bytes_sent += sent
        if self.protocol.close_expected():
            self.deadline = self.state.clock + CLOSE_TIMEOUT_SECONDS

    # --- deadlines ----------------------------------------------------------------------

    def _idle(self) -> None:
        settings = self.settings
        deadline = self.state.clock + settings.ws_idle_timeout_seconds
        if self._fragments:  # a message under way must end in time, traffic or not
            deadline = min(deadline, self._message_began + settings.ws_message_timeout_seconds)
        self.deadline = deadline

    def expire(self) -> None:
        """The sweep's call: a fragmented message took too long (close 1008), idle too long
        (close 1001), or the close handshake timed out."""
        self.deadline = None
        transport = self.transport
        if transport is None:
            return
        if self.protocol.state is State.OPEN and self._message_overdue():
            self._fail(CloseCode.POLICY_VIOLATION, "a message took longer than "
                       f"ws_message_timeout_seconds={self.settings.ws_message_timeout_seconds:g}")
            self._flush()
            self._update_fast_path()
        elif self.protocol.state is State.OPEN:
            self.state.stats.keepalive_timeouts += 1
            self.close(CloseCode.GOING_AWAY, "idle timeout")
        else:
            transport.abort()

"""WebSocket lanes: one message in flight per connection, each round trip one sample row.

A :class:`WebSocketLane` is a :class:`~lab.engine.lane.Lane` whose connection is upgraded
before its first message and whose "request" is one masked client frame. The engines --
closed loop and open loop -- drive it unchanged, and the lane's rows and continuation are the
ones every lane shares, so a WebSocket run has the same rows, records, exports and thresholds
as an HTTP one:

- ``connect_ns`` is the TCP connect plus the opening handshake, up to the 101;
- ``first_byte_ns`` and ``done_ns`` are when the echo's bytes arrived (one read, in practice);
- ``status`` is 101, the status of the connection the message went over;
- ``response_bytes`` counts the frame as it came, header included.

The handshake and every frame other than the expected echo go through the ``websockets``
library's Sans-I/O ``ClientProtocol`` (ping answered with pong, close answered, bad frames
caught). The common case is checked first: an echo server answers a message with the same
payload in an unmasked frame, so a read equal to those bytes is the answer, compared in one
``==`` (~0.1 us) instead of parsed (~5 us in the library). Every message reuses one frame
built per connection, mask included: RFC 6455 asks a browser for a fresh mask per frame to
keep a script from steering bytes through a proxy's cache, which does not arise for a load
generator on a path it owns, and rebuilding the frame would be the generator measuring itself.

A server may be hostile. The library parses some microseconds per frame, so a server flooding
empty pings (two bytes each, 32,768 in a 64 KiB read) could keep a worker's loop busy for
seconds per read, its timers starved and the run unending. Bytes go to the library in slices
of :data:`FEED_BYTES`, and a connection that brings more than :data:`MAX_FRAMES_BETWEEN_ANSWERS`
frames without an answer is given up (``too_large``), as is a message over the plan's
``max_message_bytes``: the work and memory one connection can cost stay bounded.
"""

from __future__ import annotations

import asyncio
from time import perf_counter_ns

from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from lab.engine.lane import Lane, LaneOwner, Wire
from lab.engine.plan import WebSocketPlan
from lab.measure.samples import MISSING, ErrorKind

SWITCHING_PROTOCOLS = 101
FEED_BYTES = 4096  # at most ~2,000 frames parsed before the flood check: a few ms of work
# Frames that are not the answer, since the last answer (or the opening): pings, pongs, pushes.
# A polite server sends a few pings a minute; a thousand in one round trip is a flood.
MAX_FRAMES_BETWEEN_ANSWERS = 1000
DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class HandshakeRefused(ConnectionError):
    """The server answered the upgrade with something other than 101."""


class Flooded(ConnectionError):
    """The server sent more frames than a message may wait through, before any was sent."""

    kind = ErrorKind.TOO_LARGE


class WebSocketLane(Lane):
    __slots__ = ("client", "echo", "frames_since_answer", "handshake", "message_opcode", "payload",
                 "websocket")

    def __init__(self, engine: LaneOwner) -> None:
        super().__init__(engine)
        websocket = engine.plan.websocket
        assert websocket is not None
        self.websocket: WebSocketPlan = websocket
        self.payload = websocket.payload
        self.message_opcode = Opcode.TEXT if websocket.text else Opcode.BINARY
        self.client: ClientProtocol | None = None
        self.handshake: asyncio.Future[None] | None = None
        self.echo = b""  # the server's frame when it echoes our payload back, unmasked
        self.frames_since_answer = 0

    # --- the lane type's part -------------------------------------------------------------------

    async def connect(self) -> None:
        """TCP, then the opening handshake up to the 101."""
        await self.open_wire()
        websocket = self.websocket
        extensions = [ClientPerMessageDeflateFactory()] if websocket.compression else None
        client = self.client = ClientProtocol(parse_uri(websocket.uri), extensions=extensions,
                                              max_size=websocket.max_message_bytes)
        self.frames_since_answer = 0
        handshake = self.handshake = asyncio.get_running_loop().create_future()
        client.send_request(client.connect())
        self._flush()
        try:
            await handshake
        except BaseException:
            self.handshake = None
            self.drop_connection(reset=True)
            raise
        if self.transport is None:  # flooded (or closed) right after the 101
            if self.frames_since_answer > MAX_FRAMES_BETWEEN_ANSWERS:
                raise Flooded("frames flooded in after the opening handshake")
            raise ConnectionResetError("closed right after the opening handshake")
        self.engine.count_connected()
        compressed = bool(client.extensions)
        # With permessage-deflate every message goes through the library (it compresses);
        # without, one frame serves every message of this connection.
        self.request = None if compressed else Frame(self.message_opcode, self.payload).serialize(
            mask=True, extensions=[])
        self.echo = b"" if compressed else Frame(self.message_opcode, self.payload).serialize(
            mask=False, extensions=[])

    def compose(self) -> bytes:
        """One message through the library (compressed: each frame differs)."""
        client = self.client
        assert client is not None
        if self.message_opcode is Opcode.TEXT:
            client.send_text(self.payload)
        else:
            client.send_binary(self.payload)
        return b"".join(client.data_to_send())

    def _flush(self) -> None:
        client, transport = self.client, self.transport
        if client is None or transport is None:
            return
        for data in client.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof() and not transport.is_closing():
                transport.write_eof()

    # --- receiving: the hot path ------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        now = perf_counter_ns()
        if data == self.echo and self.busy:
            if self.first_byte_ns == MISSING:
                self.first_byte_ns = now
            self.end_request(now, SWITCHING_PROTOCOLS, self.received + len(data), True)
            return
        if self.handshake is not None:
            self._handshake_data(data)
            return
        self._frames(now, data)

    def _frames(self, now: int, data: bytes) -> None:
        """Anything but the plain echo: the library parses it (fragments, control frames)."""
        client = self.client
        if client is None:
            return
        if self._connecting is not None:
            # The handshake is done but connect() has not resumed to send the message: what
            # comes now answers nothing, and a flood is connect()'s to report (Flooded).
            self._feed(client, data, awaiting=False)
            if self.frames_since_answer > MAX_FRAMES_BETWEEN_ANSWERS or client.state is not State.OPEN:
                self.drop_connection(reset=True)
            else:
                self._flush()
            return
        if self.busy and self.first_byte_ns == MISSING:
            self.first_byte_ns = now
        self.received += len(data)
        answered = self._feed(client, data, awaiting=self.busy)
        if self.frames_since_answer > MAX_FRAMES_BETWEEN_ANSWERS:
            self._flooded(now)
            return
        self._flush()
        if client.state is not State.OPEN:
            self._closed_by_server(now)
        elif answered and self.busy:
            self.end_request(now, SWITCHING_PROTOCOLS, self.received, True)
        elif not self.busy:
            self.received = 0  # a ping or a push nobody waited for: not a round trip

    def _feed(self, client: ClientProtocol, data: bytes, *, awaiting: bool) -> bool:
        """Hand ``data`` to the library a slice at a time, counting the frames that are not an
        answer; True when a whole message came while one was awaited. Stops at a flood."""
        answered = False
        for start in range(0, len(data), FEED_BYTES):
            client.receive_data(data[start:start + FEED_BYTES])
            for event in client.events_received():
                if awaiting and isinstance(event, Frame) and event.fin and event.opcode in DATA_OPCODES:
                    answered = True
                    self.frames_since_answer = 0
                else:
                    self.frames_since_answer += 1
            if self.frames_since_answer > MAX_FRAMES_BETWEEN_ANSWERS or client.state is not State.OPEN:
                break
        return answered

    def _flooded(self, now: int) -> None:
        """More frames than a round trip may take: no answer will be found among them."""
        if self.busy:
            self.finish(now, 0, ErrorKind.TOO_LARGE, reset=True)
        else:
            self.drop_connection(reset=True)

    def _closed_by_server(self, now: int) -> None:
        """A close frame (idle timeout, 1009, 1002): the message in flight failed."""
        if self.busy:
            failure = None if self.client is None else self.client.parser_exc
            kind = (ErrorKind.TOO_LARGE if isinstance(failure, PayloadTooBig)
                    else ErrorKind.CLOSED_BY_SERVER if failure is None else ErrorKind.MALFORMED)
            self.finish(now, 0, kind, reset=failure is not None)
        else:
            self.drop_connection()

    def _handshake_data(self, data: bytes) -> None:
        client, handshake = self.client, self.handshake
        assert client is not None and handshake is not None
        for start in range(0, len(data), FEED_BYTES):
            client.receive_data(data[start:start + FEED_BYTES])
            events = client.events_received()
            response = next((e for e in events if isinstance(e, Response)), None)
            if response is None or handshake.done():
                continue
            self.handshake = None
            if client.state is not State.OPEN:
                handshake.set_exception(HandshakeRefused(
                    f"the server answered the upgrade with {response.status_code}"))
                return
            handshake.set_result(None)
            # Frames after the 101, before any message was sent: none is an answer.
            self.frames_since_answer = len(events) - 1
            self._feed(client, data[start + FEED_BYTES:], awaiting=False)
            if self.frames_since_answer > MAX_FRAMES_BETWEEN_ANSWERS:
                self.drop_connection(reset=True)  # connect() finds it gone: Flooded
            return

    def on_lost(self, wire: Wire, exc: Exception | None) -> None:
        handshake = self.handshake
        if handshake is not None and not handshake.done():
            handshake.set_exception(exc or ConnectionResetError("closed during the handshake"))
        super().on_lost(wire, exc)

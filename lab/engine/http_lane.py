"""HTTP/1.1 lanes: a request out, its answer read by llhttp, one row per request.

Every connection is an :class:`HttpLane` (a :class:`~lab.engine.lane.Lane`): it sends one
request, reads its answer (llhttp, or :class:`~lab.engine.response.RepeatedResponse` for an
answer seen before) and ends the request with the one :meth:`~lab.engine.lane.Lane.end_request`
every lane type shares.

The hot path runs inside the protocol's ``data_received`` callback: no task, no future and
no timer per request; one ``perf_counter_ns`` per received chunk and one per send.

One request, one final answer (RFC 9110 section 15.2): interim 1xx answers (100 Continue,
103 Early Hints) are read past, and a second response starting after the final one, in the
same read, is not an answer to anything -- the request is counted ``malformed``.
"""

from __future__ import annotations

from time import perf_counter_ns

from lab.engine.lane import Lane, LaneOwner
from lab.engine.response import (
    HttpParserError,
    RepeatedResponse,
    ResponseParser,
    body_ends_at_close,
    response_parser,
)
from lab.measure.samples import MISSING, ErrorKind


class HttpLane(Lane):
    """A lane that carries HTTP/1.1 requests, one at a time."""

    __slots__ = ("complete", "first_chunk", "keep_alive", "parser", "repeat", "status")

    def __init__(self, engine: LaneOwner) -> None:
        super().__init__(engine)
        requests = engine.plan.requests
        # With one path every request is the same bytes object: no lookup per request.
        self.request = requests[0] if len(requests) == 1 else None
        self.parser: ResponseParser | None = None
        self.repeat: RepeatedResponse | None = None
        self.complete = False  # set by the parser's callback at the end of a final response
        self.status = 0  # that response's status
        self.keep_alive = True  # whether that response lets the connection be reused
        self.first_chunk = b""

    # --- llhttp's callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        # A response starting after this request's final one, in the same read: the server
        # answered something nobody asked (or framed its answer wrongly). llhttp stops on the
        # raise, and the request is counted malformed rather than matched to the wrong answer.
        if self.complete:
            raise HttpParserError("a response after the final response to the request")

    def on_message_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()  # type: ignore[union-attr]
        if status < 200:
            return  # 1xx: interim (100 Continue, 103 Early Hints); the final answer follows
        self.complete = True
        self.status = status
        # Only true inside this callback: llhttp resets its flags when the message ends.
        self.keep_alive = parser.should_keep_alive()  # type: ignore[union-attr]

    # --- the lane type's part -------------------------------------------------------------------

    async def connect(self) -> None:
        # Ready before the connection is: a request sent with the SYN may be answered at once.
        self.parser = response_parser(self, method=self.engine.plan.method)
        self.repeat = None
        await self.open_wire()
        self.engine.count_connected()

    def first_request(self) -> bytes | None:
        if self.engine.tls is not None:
            return None  # the TLS handshake comes first
        return self.request or self.compose()

    def compose(self) -> bytes:
        return self.engine.pick_request()

    def on_data(self, data: bytes) -> None:
        now = perf_counter_ns()
        repeat = self.repeat
        if (repeat is not None and self.first_byte_ns == MISSING and self.busy
                and (data == repeat.last or (len(data) == repeat.length and repeat.matches(data)))):
            # The previous answer again, byte for byte but for its Date: the framing llhttp
            # checked then holds now, and the parser is between messages. ~0.3 µs saved.
            self.first_byte_ns = now
            self.end_request(now, repeat.status, len(data), repeat.keep_alive)
            return
        first_byte_ns = self.first_byte_ns
        if first_byte_ns == MISSING:
            if not self.busy:
                self.drop_connection(reset=True)  # bytes nobody asked for (a 408 when idle)
                return
            self.first_byte_ns = first_byte_ns = now
        self.received += len(data)
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except HttpParserError:
            self.complete = False
            self.finish(now, 0, ErrorKind.MALFORMED, reset=True)
            return
        if not self.complete:
            if first_byte_ns == now:
                self.first_chunk = data  # kept for body_ends_at_close(), off the common path
            return
        self.complete = False
        # A whole answer in one chunk may come again: remember how it looked.
        self.repeat = (RepeatedResponse.learn(data, self.status, self.keep_alive)
                       if first_byte_ns == now else None)
        self.end_request(now, self.status, self.received, self.keep_alive)

    def answer_at_close(self) -> int | None:
        if self.received and body_ends_at_close(self.first_chunk):
            return self.parser.get_status_code()  # type: ignore[union-attr]
        return None

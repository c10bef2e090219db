"""The lab's built-in routes: small, predictable workloads for latency experiments.

| route | what it does |
| --- | --- |
| ``GET /fast`` | precomputed ``OK``: the article's minimal handler, bytes built once |
| ``GET /`` | the same as ``/fast`` (the seed article's wrk runs load ``/``) |
| ``POST /echo`` | the request body back |
| ``GET /users/{id}`` | a small JSON document naming the id (a parameter route) |
| ``GET /delay/{ms}`` | answers after ``ms`` ms without blocking others (``?slow_percent=P&slow_ms=M``) |
| ``GET /work/{us}`` | keeps the CPU busy for ``us`` microseconds, blocking the loop meanwhile |
| ``GET /bytes/{n}`` | an ``n``-byte body (for buffer-size experiments) |
| ``GET /stream/{chunks}`` | ``chunks`` chunks in chunked encoding, 10 ms apart |
| ``GET /backend`` | waits for one of K back-end workers; queued, shed or dropped (``backend_*``) |
| ``GET /sockopts`` | the TCP options read back from this connection's socket, as JSON |
| ``GET /metrics`` | the request-duration histogram in the Prometheus text format (``metrics`` on) |
| ``GET /ws/echo`` | WebSocket: each message back, as it came (text or binary) |
| ``GET /ws/stream/{n}`` | WebSocket: ``n`` text messages pushed 10 ms apart, then a normal close |
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

from lab.http.backend import Outcome
from lab.http.messages import Prebuilt, Request, Response, StreamingResponse, WebSocketSession
from lab.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from lab.http.routing import Router
from lab.units import KIB, MIB, NS_PER_US

MAX_DEMO_BODY_BYTES = 256 * 1024 * 1024
MAX_DELAY_MS = 60_000
MAX_WORK_US = 1_000_000
MAX_STREAM_CHUNKS = 10_000
STREAM_PAUSE_SECONDS = 0.01

FAST = Prebuilt(b"OK")


def whole_number(text: str, maximum: int) -> int | None:
    """``text`` as a whole number in [0, maximum] written in ASCII digits, or None.

    The length is checked before ``int()``: Python refuses to convert more than 4300 digits
    (a ValueError that would be a 500), and a client may send any number of them.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(maximum)) or int(digits) > maximum:
        return None
    return int(digits)


def _bounded_int(request: Request, name: str, maximum: int) -> int | Response:
    """A path parameter as a whole number in [0, maximum], or the 400 that says why not."""
    text = request.params[name]
    number = whole_number(text, maximum)
    if number is None:
        shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
        return Response.text(f"{name} must be a whole number from 0 to {maximum}, got {shown!r}\n", 400)
    return number


def echo(request: Request) -> Response:
    return Response(request.body, content_type="application/octet-stream")


def user(request: Request) -> Response:
    return Response.json({"id": request.params["id"], "name": f"user {request.params['id']}"})


async def delay(request: Request) -> Response:
    """Wait ``ms`` milliseconds without blocking the loop.

    ``?slow_percent=P&slow_ms=M`` makes a tail on purpose: each request, with probability P %
    (drawn independently), waits M ms instead -- the "1 % of requests are slow" backend of the
    tail-at-scale lesson, where fan-out and hedging are measured against it.
    """
    milliseconds = _bounded_int(request, "ms", MAX_DELAY_MS)
    if isinstance(milliseconds, Response):
        return milliseconds
    slow = _slow_draw(request)
    if isinstance(slow, Response):
        return slow
    waited = milliseconds if slow is None else slow
    await asyncio.sleep(waited / 1000)
    return Response.text(f"waited {waited} ms\n")


def _slow_draw(request: Request) -> int | Response | None:
    """The slow wait this request drew (ms), None for the normal one, or a 400 saying why not."""
    query = parse_qs(request.query)
    if "slow_percent" not in query and "slow_ms" not in query:
        return None
    percent_text = query.get("slow_percent", ["0"])[0]
    try:
        # A percentage is short: a longer text is refused before float() reads all of it.
        percent = float(percent_text) if len(percent_text) <= 32 else -1.0
    except ValueError:
        percent = -1.0
    slow_ms = whole_number(query.get("slow_ms", ["0"])[0], MAX_DELAY_MS)
    if not 0 <= percent <= 100 or slow_ms is None:
        shown = request.query if len(request.query) <= 80 else f"{request.query[:60]}..."
        return Response.text(f"slow_percent must be from 0 to 100 and slow_ms a whole number from 0 "
                             f"to {MAX_DELAY_MS}, got {shown!r}\n", 400)
    return slow_ms if random.random() * 100 < percent else None


def work(request: Request) -> Response:
    """A handler with a known service time: it holds the loop, as CPU-bound work would.

    ``?dist=exp`` draws each request's time from an exponential distribution with mean ``us``
    (capped at ``MAX_WORK_US``): real handlers vary, and queueing comes from that variability.
    """
    microseconds = _bounded_int(request, "us", MAX_WORK_US)
    if isinstance(microseconds, Response):
        return microseconds
    distribution = parse_qs(request.query).get("dist", ["fixed"])[0]
    if distribution not in ("fixed", "exp"):
        return Response.text(f"dist must be 'fixed' or 'exp', got {distribution!r}\n", 400)
    if distribution == "exp" and microseconds:
        microseconds = min(round(random.expovariate(1 / microseconds)), MAX_WORK_US)
    # A busy loop, not sleep(): the point is that nothing else runs meanwhile.
    until = time.perf_counter_ns() + microseconds * NS_PER_US
    while time.perf_counter_ns() < until:
        pass
    return Response.text(f"worked {microseconds} us\n")


# Bodies up to this size are built once and kept (a Prebuilt holds the body and the encoded
# answer: about twice its size). Larger ones are streamed from one shared block, so no client
# can make the server hold a large body -- the limit is per cache, not per entry count.
CACHED_BODY_MAX_BYTES = 256 * KIB
BODY_CACHE_MAX_BYTES = 16 * MIB
_BODY_BLOCK = b"x" * CACHED_BODY_MAX_BYTES
_body_cache: OrderedDict[int, Prebuilt] = OrderedDict()


def sized_body(request: Request) -> Response | Prebuilt | StreamingResponse:
    size = _bounded_int(request, "n", MAX_DEMO_BODY_BYTES)
    if isinstance(size, Response):
        return size
    if size > CACHED_BODY_MAX_BYTES:
        return StreamingResponse(_blocks(size), content_type="application/octet-stream",
                                 content_length=size)
    return _cached_body(size)


def _cached_body(size: int) -> Prebuilt:
    """The answer for a small size, from a cache bounded by bytes (least recently used out)."""
    cached = _body_cache.get(size)
    if cached is not None:
        _body_cache.move_to_end(size)
        return cached
    cached = _body_cache[size] = Prebuilt(_BODY_BLOCK[:size], content_type="application/octet-stream")
    while sum(_body_cache) > BODY_CACHE_MAX_BYTES:  # the keys are the body sizes
        _body_cache.popitem(last=False)
    return cached


async def _blocks(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes as slices of one shared block; the connection writes each as the client
    drains the last, so memory stays at about one block per slow client."""
    for _ in range(size // len(_BODY_BLOCK)):
        yield _BODY_BLOCK
    if size % len(_BODY_BLOCK):
        yield _BODY_BLOCK[:size % len(_BODY_BLOCK)]


def stream(request: Request) -> Response | StreamingResponse:
    count = _bounded_int(request, "chunks", MAX_STREAM_CHUNKS)
    if isinstance(count, Response):
        return count

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(count):
            if index:
                await asyncio.sleep(STREAM_PAUSE_SECONDS)
            yield f"chunk {index}\n".encode()

    return StreamingResponse(chunks())


async def backend(request: Request) -> Response:
    """A request to the back end (lab/http/backend.py): 200 once a worker served it, 503 with
    ``Retry-After`` when it was shed or dropped. Shielded: a caller that leaves does not take
    its job out of the queue, as a query already handed to a database is not."""
    state = request.connection.state
    outcome = await asyncio.shield(state.backend.start())
    if outcome == Outcome.SERVED:
        return Response.text("served\n")
    retry_after = str(state.settings.backend_retry_after_seconds)
    return Response(f"{outcome}\n".encode(), 503, headers=[("Retry-After", retry_after)])


def sockopts(request: Request) -> Response:
    return Response.json(request.connection.socket_options())


class WebSocketEcho:
    """Each message back, text as text and binary as binary."""

    def on_open(self, session: WebSocketSession) -> None:
        pass

    def on_message(self, session: WebSocketSession, text: bool, payload: bytes) -> None:
        session.send(text, payload)


WEBSOCKET_ECHO = WebSocketEcho()  # it keeps no state: one serves every connection


class WebSocketStream:
    """``count`` messages pushed at ``STREAM_PAUSE_SECONDS``, then close 1000; input is ignored."""

    def __init__(self, count: int) -> None:
        self.count = count

    def on_open(self, session: WebSocketSession) -> None:
        session.start(self._push(session))

    def on_message(self, session: WebSocketSession, text: bool, payload: bytes) -> None:
        pass

    async def _push(self, session: WebSocketSession) -> None:
        for index in range(self.count):
            if index:
                await asyncio.sleep(STREAM_PAUSE_SECONDS)
            session.send(True, f"message {index}".encode())
        session.close()


def metrics(request: Request) -> Response:
    """This worker's request-duration histogram (lab/http/metrics.py), as Prometheus scrapes it."""
    state = request.connection.state
    if not state.settings.metrics:
        return Response.text("metrics are off: start the server with metrics=True (--metrics)\n", 404)
    return Response(state.durations.exposition(), content_type=METRICS_CONTENT_TYPE)


def websocket_echo(request: Request) -> WebSocketEcho:
    return WEBSOCKET_ECHO


def websocket_stream(request: Request) -> WebSocketStream | Response:
    count = _bounded_int(request, "n", MAX_STREAM_CHUNKS)
    return count if isinstance(count, Response) else WebSocketStream(count)


def demo_router() -> Router:
    router = Router()
    router.add("GET", "/fast", FAST)  # a constant answer: parsed, checked, no handler call
    router.add("GET", "/", FAST)
    router.add(("POST", "PUT"), "/echo", echo)
    router.add("GET", "/users/{id}", user)
    router.add("GET", "/delay/{ms}", delay)
    router.add("GET", "/work/{us}", work)
    router.add("GET", "/bytes/{n}", sized_body)
    router.add("GET", "/stream/{chunks}", stream)
    router.add("GET", "/backend", backend)
    router.add("GET", "/sockopts", sockopts)
    router.add("GET", "/metrics", metrics)
    router.add_websocket("/ws/echo", websocket_echo)
    router.add_websocket("/ws/stream/{n}", websocket_stream)
    return router

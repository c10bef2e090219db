"""The lab's built-in routes: small, predictable workloads for latency experiments.

| route | what it does |
| --- | --- |
| ``GET /fast`` | precomputed ``OK``: the article's minimal handler, bytes built once |
| ``GET /`` | the same as ``/fast`` (the seed article's wrk runs load ``/``) |
| ``POST /echo`` | the request body back |
| ``GET /users/{id}`` | a small JSON document naming the id (a parameter route) |
| ``GET /delay/{ms}`` | answers after ``ms`` milliseconds without blocking other requests |
| ``GET /work/{us}`` | keeps the CPU busy for ``us`` microseconds, blocking the loop meanwhile |
| ``GET /bytes/{n}`` | an ``n``-byte body (for buffer-size experiments) |
| ``GET /stream/{chunks}`` | ``chunks`` chunks in chunked encoding, 10 ms apart |
| ``GET /sockopts`` | the TCP options read back from this connection's socket, as JSON |
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

from lab.http.messages import Prebuilt, Request, Response, StreamingResponse
from lab.http.routing import Router
from lab.units import NS_PER_US

MAX_DEMO_BODY_BYTES = 256 * 1024 * 1024
MAX_DELAY_MS = 60_000
MAX_WORK_US = 1_000_000
MAX_STREAM_CHUNKS = 10_000
STREAM_PAUSE_SECONDS = 0.01

FAST = Prebuilt(b"OK")


def _bounded_int(request: Request, name: str, maximum: int) -> int | Response:
    """A path parameter as a whole number in [0, maximum], or the 400 that says why not."""
    text = request.params[name]
    if not text.isdigit() or int(text) > maximum:
        return Response.text(f"{name} must be a whole number from 0 to {maximum}, got {text!r}\n", 400)
    return int(text)


def fast(request: Request) -> Prebuilt:
    return FAST


def echo(request: Request) -> Response:
    return Response(request.body, content_type="application/octet-stream")


def user(request: Request) -> Response:
    return Response.json({"id": request.params["id"], "name": f"user {request.params['id']}"})


async def delay(request: Request) -> Response:
    milliseconds = _bounded_int(request, "ms", MAX_DELAY_MS)
    if isinstance(milliseconds, Response):
        return milliseconds
    await asyncio.sleep(milliseconds / 1000)
    return Response.text(f"waited {milliseconds} ms\n")


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


_body_cache: dict[int, Prebuilt] = {}


def sized_body(request: Request) -> Response | Prebuilt:
    size = _bounded_int(request, "n", MAX_DEMO_BODY_BYTES)
    if isinstance(size, Response):
        return size
    if size not in _body_cache:
        if len(_body_cache) > 64:  # bound the memory a sweep of sizes can take
            _body_cache.clear()
        _body_cache[size] = Prebuilt(b"x" * size, content_type="application/octet-stream")
    return _body_cache[size]


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


def sockopts(request: Request) -> Response:
    return Response.json(request.connection.socket_options())


def demo_router() -> Router:
    router = Router()
    router.add("GET", "/fast", fast, pure=True)
    router.add("GET", "/", fast, pure=True)
    router.add(("POST", "PUT"), "/echo", echo)
    router.add("GET", "/users/{id}", user)
    router.add("GET", "/delay/{ms}", delay)
    router.add("GET", "/work/{us}", work)
    router.add("GET", "/bytes/{n}", sized_body, pure=True)
    router.add("GET", "/stream/{chunks}", stream)
    router.add("GET", "/sockopts", sockopts)
    return router

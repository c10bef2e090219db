"""The HTTP connection without sockets: the same bytes get the same answers, however split.

A request can arrive in any number of reads, cut anywhere -- inside the request line, a
header name, a chunk size. The connection is fed bytes directly (h11's way of testing), with
a transport that only records what is written, and its output is compared with the output
for the same bytes fed in one read.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.http.config import ServerConfig
from lab.http.connection import HttpConnection
from lab.http.demo_routes import demo_router
from lab.http.state import ServerState

# Requests the demo routes answer synchronously (no task on a running loop needed).
FAST = b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n"
USER = b"GET /users/42?x=1 HTTP/1.1\r\nHost: t\r\nX-Id: 7\r\n\r\n"
ECHO = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
ECHO_CHUNKED = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
HEAD = b"HEAD /fast HTTP/1.1\r\nHost: t\r\n\r\n"
NOT_FOUND = b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
WRONG_METHOD = b"DELETE /fast HTTP/1.1\r\nHost: t\r\n\r\n"
HTTP10 = b"GET /fast HTTP/1.0\r\n\r\n"
WELL_FORMED = (FAST, USER, ECHO, ECHO_CHUNKED, HEAD, NOT_FOUND, WRONG_METHOD)
# Requests that end the connection (after their answer, nothing more is read).
NO_HOST = b"GET /fast HTTP/1.1\r\n\r\n"
BAD_CODING = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
GARBAGE = b"GET /fast HTTP/1.1\r\nHost t\r\n\r\n"
UPGRADE = b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
FINAL = (NO_HOST, BAD_CODING, GARBAGE, UPGRADE, HTTP10)
DATE_LINE = re.compile(rb"Date: [^\r]*\r\n")
STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


class RecordingTransport(asyncio.Transport):
    """Keeps what the connection writes; has no socket, so no socket options are set."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.written += data

    def write_eof(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def answers(loop: asyncio.AbstractEventLoop, reads: Sequence[bytes],
            **knobs: Any) -> tuple[bytes, bool]:
    """What the connection writes for these reads, and whether it closed."""
    state = ServerState(ServerConfig(**knobs), demo_router(), loop)
    connection = HttpConnection(state)
    transport = RecordingTransport()
    connection.connection_made(transport)
    for data in reads:
        while data and not transport.closed:
            buffer = connection.get_buffer(len(data))
            size = min(len(buffer), len(data))
            buffer[:size] = data[:size]
            connection.buffer_updated(size)
            data = data[size:]
    # The Date line changes with the clock's second, not with how the bytes were split.
    return DATE_LINE.sub(b"Date: -\r\n", bytes(transport.written)), transport.closed


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@pytest.mark.parametrize("request_bytes", [*WELL_FORMED, *FINAL])
def test_every_single_cut_gives_the_same_answer(loop, request_bytes: bytes) -> None:
    whole = answers(loop, [request_bytes + FAST])
    for cut in range(1, len(request_bytes) + len(FAST)):
        data = request_bytes + FAST
        assert answers(loop, [data[:cut], data[cut:]]) == whole, f"cut at {cut}"


@settings(max_examples=300, deadline=None)
@given(pipeline=st.lists(st.sampled_from(WELL_FORMED), min_size=1, max_size=6),
       last=st.sampled_from((b"", *FINAL)),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       read_buffer=st.sampled_from((256, 300, 4096)))
def test_pipelines_split_anywhere_get_the_same_answers(loop, pipeline: list[bytes], last: bytes,
                                                       cuts: list[int], read_buffer: int) -> None:
    data = b"".join(pipeline) + last
    whole = answers(loop, [data], read_buffer_bytes=read_buffer)
    assert answers(loop, split_at(data, cuts), read_buffer_bytes=read_buffer) == whole


@settings(max_examples=200, deadline=None)
@given(pipeline=st.lists(st.sampled_from(WELL_FORMED), min_size=1, max_size=6))
def test_one_answer_per_request_in_order(loop, pipeline: list[bytes]) -> None:
    written, closed = answers(loop, [b"".join(pipeline)])
    assert written.count(b"HTTP/1.1 ") == len(pipeline)
    assert not closed
    statuses = [int(status) for status in STATUS_LINE.findall(written)]
    expected = {NOT_FOUND: 404, WRONG_METHOD: 405}
    assert statuses == [expected.get(request, 200) for request in pipeline]


@pytest.mark.parametrize("request_bytes", FINAL)
def test_a_request_that_ends_the_connection_gets_one_answer_and_nothing_after(loop, request_bytes):
    written, closed = answers(loop, [request_bytes + FAST + FAST])
    assert written.count(b"HTTP/1.1 ") == 1
    assert closed


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=20),
       limit=st.sampled_from((256, 1024, 4096)))
def test_a_head_over_the_limit_is_refused_however_it_arrives(loop, cuts: list[int], limit: int) -> None:
    data = b"GET /fast HTTP/1.1\r\nHost: t\r\nX-Long: " + b"a" * (4 * limit) + b"\r\n\r\n"
    written, closed = answers(loop, split_at(data, cuts), max_header_bytes=limit, read_buffer_bytes=256)
    assert written.startswith(b"HTTP/1.1 431 ")
    assert closed

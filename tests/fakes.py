"""What the protocol tests share: requests as raw bytes, and the fakes a connection is fed
through without an event loop's I/O (a transport that records what is written, a socket that
keeps the options set on it), with the helpers that feed bytes, cut them, and generate heads.

uvicorn's way: raw request bytes as named constants; h11's way: bytes in, bytes out.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import string
import time
from collections.abc import Callable, Sequence
from typing import Any

import httptools
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


class UpgradableTransport(RecordingTransport):
    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def can_write_eof(self) -> bool:
        return True


class RecordingSocket:
    """Keeps the socket options set on it (the connection sets them on the accepted socket)."""

    def __init__(self) -> None:
        self.options: list[tuple[int, int, Any]] = []

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        self.options.append((level, option, value))


class TransportWithSocket(UpgradableTransport):
    def __init__(self) -> None:
        super().__init__()
        self.socket = RecordingSocket()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.socket if name == "socket" else default



# --- llhttp as the reference -----------------------------------------------------------------

class LlhttpRecorder:
    """What llhttp reports of a request, through the callbacks the connection uses."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = 0
        self.parser = httptools.HttpRequestParser(self)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.complete += 1


# --- feeding a connection ---------------------------------------------------------------------

def feed(protocol: Any, data: bytes) -> None:
    while data:
        buffer = protocol.get_buffer(len(data))
        size = min(len(buffer), len(data))
        buffer[:size] = data[:size]
        protocol.buffer_updated(size)
        data = data[size:]


def answers(loop: asyncio.AbstractEventLoop, reads: Sequence[bytes],
            **knobs: Any) -> tuple[bytes, bool]:
    """What the connection writes for these reads, and whether it closed."""
    return answers_of(HttpConnection(ServerState(ServerConfig(**knobs), demo_router(), loop)), reads)


def answers_of(connection: HttpConnection, reads: Sequence[bytes]) -> tuple[bytes, bool]:
    """What a connection made by the caller writes for these reads, and whether it closed."""
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



# --- generated request heads --------------------------------------------------------------------

TCHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
NAMES = (b"Host", b"host", b"HOST", b"X-Id", b"Accept", b"User-Agent", b"Content-Length",
         b"Transfer-Encoding", b"Connection", b"Upgrade", b"Expect", b"Cookie", b"Te")


def _ascii(text: str) -> bytes:
    return text.encode("latin-1")


# The parts of a plain head, as a client would send them ...
PLAIN_NAMES = (b"Host", b"host", b"X-Id", b"Accept", b"User-Agent", b"Cookie", b"Te", b"X-Upgrade",
               b"Connection")  # with a plain value, a Connection header is a near miss
plain_methods = st.sampled_from((b"GET", b"HEAD"))
plain_targets = st.text(alphabet=string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@/?",
                        max_size=20).map(lambda text: b"/" + _ascii(text))
plain_names = st.one_of(st.sampled_from(PLAIN_NAMES),
                        st.text(alphabet=TCHARS, min_size=1, max_size=10).map(_ascii))
plain_values = st.one_of(
    st.sampled_from((b"keep-alive", b"Keep-Alive", b"close", b"upgrade")),
    st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " \t",
            min_size=1, max_size=16).map(lambda text: _ascii(text.strip(" \t") or "v")))
plain_separators = st.sampled_from((b": ", b":"))
# ... and what a near miss puts in one of their places.
ODD_PARTS = {
    "method": st.sampled_from((b"POST", b"get", b"GE", b"OPTIONS", b"DELETE", b"CONNECT", b"GET ", b"")),
    "target": st.one_of(st.binary(max_size=12).map(lambda raw: b"/" + raw),
                        st.sampled_from((b"*", b"http://example.com/", b"", b"example.com:443", b"/a#b"))),
    "version": st.sampled_from((b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 ", b"HTTP/1.10")),
    "name": st.one_of(st.sampled_from(NAMES), st.text(alphabet=TCHARS + " :\t@()", max_size=10).map(_ascii)),
    "value": st.one_of(st.binary(max_size=10),
                       st.sampled_from((b"", b" a", b"a ", b"a\t", b"\x7f", b"\xe9"))),
    "separator": st.sampled_from((b":  ", b" : ", b":\t", b"")),
    "line_end": st.sampled_from((b"\n", b"\r", b"\r\r\n", b"\n\r")),
    "hosts": st.sampled_from((0, 2)),
}


@st.composite
def heads(draw: Any) -> bytes:
    """A request head a client would send, or a near miss: the same with one part odd."""
    odd = draw(st.sampled_from((None, None, None, *ODD_PARTS)))

    def part(kind: str, plain: Any) -> Any:
        return draw(ODD_PARTS[kind] if kind == odd else plain)

    method, target, version = part("method", plain_methods), part("target", plain_targets), part(
        "version", st.just(b"HTTP/1.1"))
    lines = [method + b" " + target + b" " + version + b"\r\n"]
    for _ in range(draw(st.integers(0, 4))):
        lines.append(part("name", plain_names) + part("separator", plain_separators)
                     + part("value", plain_values) + part("line_end", st.just(b"\r\n")))
    for _ in range(part("hosts", st.just(1))):
        lines.insert(draw(st.integers(1, len(lines))), b"Host: " + draw(plain_values) + b"\r\n")
    return b"".join(lines) + b"\r\n"


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll ``condition`` every 10 ms until it holds or ``seconds`` pass; its last answer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()

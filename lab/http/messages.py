"""Requests and responses: what a handler sees and returns.

Handlers are plain functions ``handler(request) -> Response`` or coroutines. Responses are
encoded by the connection (lab/http/connection.py), which adds the per-connection headers
(``Date``, keep-alive or close). A :class:`Prebuilt` response encodes its fixed part once and
reuses the whole byte string for as long as those per-connection headers stay the same.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Protocol

# Parameters of a request on a static path: one shared, read-only empty mapping.
NO_PARAMS: Mapping[str, str] = MappingProxyType({})


# --- requests -------------------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    http_version: str
    keep_alive: bool
    params: Mapping[str, str] = field(default_factory=dict)
    connection: Any = None  # the HttpConnection it came on (socket read-back, peer address)
    # Made on first use: most requests never need one, and a dict per request costs ~80 ns.
    _context: dict[str, Any] | None = field(default=None, init=False, repr=False)

    @property
    def context(self) -> dict[str, Any]:
        """A dict for middleware to pass data on to the handler and to response middleware."""
        if self._context is None:
            self._context = {}
        return self._context

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of a header, matched case-insensitively (RFC 9110 section 5.1)."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default


# --- responses ------------------------------------------------------------------------------

def status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)


@dataclass(slots=True)
class Response:
    """A complete response with a body known up front."""

    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(text.encode(), status)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(json.dumps(value).encode(), status, "application/json")

    def fixed_head(self) -> bytes:
        """Status line and the headers that do not depend on the connection."""
        return (status_line(self.status)
                + f"Content-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n"
                .encode("latin-1")
                + encode_headers(self.headers))


class Prebuilt:
    """A response whose bytes are built once and reused (the article's precomputed response).

    The connection headers (Date, keep-alive or close) vary, so the full byte string is cached
    per combination of those header lines; the lines are interned objects, so the cache check
    is two identity comparisons.
    """

    __slots__ = ("_cached", "_connection_line", "_date_line", "body", "head", "status")

    def __init__(self, body: bytes, status: int = 200,
                 content_type: str = "text/plain; charset=utf-8",
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        self.head = Response(body, status, content_type, headers or []).fixed_head()
        self._date_line = self._connection_line = b""
        self._cached = b""

    def encode(self, date_line: bytes, connection_line: bytes) -> bytes:
        if date_line is not self._date_line or connection_line is not self._connection_line:
            self._cached = self.head + date_line + connection_line + b"\r\n" + self.body
            self._date_line, self._connection_line = date_line, connection_line
        return self._cached


@dataclass(slots=True)
class StreamingResponse:
    """Headers first, then each chunk as it comes, written only as fast as the client reads.

    Without ``content_length`` the body goes in chunked transfer encoding; with it, the chunks
    are the raw body and must add up to exactly that many bytes (a large body that is never
    held in memory whole).
    """

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: int | None = None

    def fixed_head(self) -> bytes:
        framing = ("Transfer-Encoding: chunked" if self.content_length is None
                   else f"Content-Length: {self.content_length}")
        return (status_line(self.status)
                + f"Content-Type: {self.content_type}\r\n{framing}\r\n".encode("latin-1")
                + encode_headers(self.headers))


AnyResponse = Response | Prebuilt | StreamingResponse
Handler = Callable[[Request], AnyResponse | Awaitable[AnyResponse]]
RequestMiddleware = Callable[[Request], AnyResponse | None]
ResponseMiddleware = Callable[[Request, AnyResponse], None]


# --- WebSocket routes -----------------------------------------------------------------------

class WebSocketSession(Protocol):
    """What a WebSocket route may do with its open connection (lab/http/websocket.py's
    WebSocketConnection is the one kind there is; a route needs no more of it than this)."""

    def send(self, text: bool, payload: bytes) -> None: ...

    def close(self, code: int = 1000, reason: str = "") -> None: ...

    def start(self, work: Coroutine[Any, Any, None]) -> None: ...


class WebSocketApp(Protocol):
    """What a WebSocket route does with a connection once it is open."""

    def on_open(self, session: WebSocketSession) -> None: ...

    def on_message(self, session: WebSocketSession, text: bool, payload: bytes) -> None: ...

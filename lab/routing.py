"""Requests, responses and the router: what a handler sees and returns.

Handlers are plain functions ``handler(request) -> Response`` or coroutines. Responses are
encoded by the connection (lab/protocol.py), which adds the per-connection headers
(``Date``, keep-alive or close). A :class:`Prebuilt` response encodes its fixed part once and
reuses the whole byte string for as long as those per-connection headers stay the same.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

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
    context: dict[str, Any] = field(default_factory=dict)  # for middleware to pass data on

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
    """Headers first, then each chunk as it comes, in chunked transfer encoding."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def fixed_head(self) -> bytes:
        return (status_line(self.status)
                + f"Content-Type: {self.content_type}\r\nTransfer-Encoding: chunked\r\n"
                .encode("latin-1")
                + encode_headers(self.headers))


AnyResponse = Response | Prebuilt | StreamingResponse
Handler = Callable[[Request], AnyResponse | Awaitable[AnyResponse]]
RequestMiddleware = Callable[[Request], AnyResponse | None]
ResponseMiddleware = Callable[[Request, AnyResponse], None]


# --- routing --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    is_async: bool
    # A pure route's answer depends on nothing but the request bytes, so the server may answer
    # a byte-identical request again without parsing it (ServerConfig.repeat_cache).
    pure: bool = False


NO_PARAMS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome of looking a request up: a route, or the status that explains why not."""

    route: Route | None
    params: Mapping[str, str]
    status: int = 200  # 404 no such path, 405 path exists but not for this method
    allowed: tuple[str, ...] = ()


_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _compile(pattern: str) -> re.Pattern[str]:
    """``/users/{id}`` -> a regex where each parameter matches one path segment."""
    parts = _PARAMETER.split(pattern)
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)"
                    for i, part in enumerate(parts))
    return re.compile(f"^{regex}$")


class Router:
    """Static paths in a dict (one lookup on the hot path); parameter paths tried in order."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Route]] = {}
        # Static paths answer with Match objects built once: no allocation per request.
        self._static_matches: dict[str, dict[str, Match]] = {}
        self._dynamic: list[tuple[re.Pattern[str], dict[str, Route]]] = []
        self.request_middleware: list[RequestMiddleware] = []
        self.response_middleware: list[ResponseMiddleware] = []

    def add(self, methods: str | tuple[str, ...], pattern: str, handler: Handler, *,
            pure: bool = False) -> None:
        """Route ``methods`` on ``pattern`` to ``handler``.

        ``pure=True`` promises that the handler is synchronous, returns a :class:`Prebuilt`,
        and that the same request bytes always get the same response.
        """
        if pure and inspect.iscoroutinefunction(handler):
            raise ValueError(f"{pattern}: a pure route needs a synchronous handler")
        if isinstance(methods, str):
            methods = (methods,)
        if "{" in pattern:
            compiled = _compile(pattern)
            table = next((t for p, t in self._dynamic if p.pattern == compiled.pattern), None)
            if table is None:
                table = {}
                self._dynamic.append((compiled, table))
        else:
            table = self._static.setdefault(pattern, {})
        route = Route(handler, inspect.iscoroutinefunction(handler), pure)
        for method in methods:
            table[method.upper()] = route
        if "GET" in table and "HEAD" not in table:
            table["HEAD"] = table["GET"]
        if "{" not in pattern:
            self._static_matches[pattern] = {method: Match(found, NO_PARAMS)
                                             for method, found in table.items()}

    def route(self, pattern: str, methods: str | tuple[str, ...] = "GET", *,
              pure: bool = False) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""
        def register(handler: Handler) -> Handler:
            self.add(methods, pattern, handler, pure=pure)
            return handler
        return register

    @property
    def has_middleware(self) -> bool:
        return bool(self.request_middleware or self.response_middleware)

    def match(self, method: str, path: str) -> Match:
        matches = self._static_matches.get(path)
        if matches is not None:
            found = matches.get(method)
            if found is not None:
                return found
        table = self._static.get(path)
        params: Mapping[str, str] = NO_PARAMS
        if table is None:
            for pattern, candidate in self._dynamic:
                found = pattern.match(path)
                if found:
                    table, params = candidate, found.groupdict()
                    break
            else:
                return Match(None, NO_PARAMS, 404)
        route = table.get(method)
        if route is None:
            return Match(None, params, 405, tuple(sorted(table)))
        return Match(route, params)

"""The router: which handler answers a method and a path.

Static paths are one dict lookup; parameter paths (``/users/{id}``) are regular expressions
tried in order. A lookup returns a :class:`RouteMatch` that carries either the route or the
status that explains why there is none (404, or 405 with the methods that are allowed).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lab.http.messages import (
    NO_PARAMS,
    Handler,
    Prebuilt,
    Request,
    RequestMiddleware,
    Response,
    ResponseMiddleware,
    WebSocketApp,
)

# A WebSocket route's handler: the behaviour of the connection, or an answer refusing it
# (a bad path parameter) that goes out as plain HTTP instead of the 101.
WebSocketHandler = Callable[[Request], WebSocketApp | Response]
UPGRADE_REQUIRED = Response(b"this is a WebSocket endpoint: send a GET with Upgrade: websocket\n", 426,
                            headers=[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")])


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    is_async: bool
    # A constant answer (the route was given a Prebuilt): the connection may send it without
    # building a Request, since no handler code would look at one.
    answer: Prebuilt | None = None
    # A WebSocket route: an upgrade request is handed to this; any other request gets the
    # route's handler, which answers 426 Upgrade Required (RFC 9110 section 15.5.22).
    websocket: WebSocketHandler | None = None


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The outcome of looking a request up: a route, or the status that explains why not."""

    route: Route | None
    params: Mapping[str, str]
    status: int = 200  # 404 no such path, 405 path exists but not for this method
    allowed: tuple[str, ...] = ()


def _constant(answer: Prebuilt) -> Handler:
    """A handler for a constant answer, for the paths that do build a Request (middleware)."""
    def handler(request: Request) -> Prebuilt:
        return answer
    return handler


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
        self._static_matches: dict[str, dict[str, RouteMatch]] = {}
        self._dynamic: list[tuple[re.Pattern[str], dict[str, Route]]] = []
        self.request_middleware: list[RequestMiddleware] = []
        self.response_middleware: list[ResponseMiddleware] = []

    def add(self, methods: str | tuple[str, ...], pattern: str, handler: Handler | Prebuilt) -> None:
        """Route ``methods`` on ``pattern`` to ``handler`` (GET also answers HEAD).

        A :class:`Prebuilt` in place of a handler is a constant answer: every request is
        still parsed and checked, but no Request object is built for it.
        """
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
        route = (Route(_constant(handler), False, handler) if isinstance(handler, Prebuilt)
                 else Route(handler, inspect.iscoroutinefunction(handler)))
        for method in methods:
            table[method.upper()] = route
        if "GET" in table and "HEAD" not in table:
            table["HEAD"] = table["GET"]
        if "{" not in pattern:
            self._static_matches[pattern] = {method: RouteMatch(found, NO_PARAMS)
                                             for method, found in table.items()}

    def add_websocket(self, pattern: str, handler: WebSocketHandler) -> None:
        """Route WebSocket upgrades on ``pattern`` to ``handler``; plain GETs get 426."""
        self.add("GET", pattern, lambda request: UPGRADE_REQUIRED)
        table = self._table(pattern)
        route = Route(table["GET"].handler, False, websocket=handler)
        table["GET"] = table["HEAD"] = route
        if "{" not in pattern:
            self._static_matches[pattern] = {method: RouteMatch(found, NO_PARAMS)
                                             for method, found in table.items()}

    def _table(self, pattern: str) -> dict[str, Route]:
        if "{" not in pattern:
            return self._static[pattern]
        compiled = _compile(pattern).pattern
        return next(t for p, t in self._dynamic if p.pattern == compiled)

    def route(self, pattern: str, methods: str | tuple[str, ...] = "GET") -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""
        def register(handler: Handler) -> Handler:
            self.add(methods, pattern, handler)
            return handler
        return register

    @property
    def has_middleware(self) -> bool:
        return bool(self.request_middleware or self.response_middleware)

    def match(self, method: str, path: str) -> RouteMatch:
        matches = self._static_matches.get(path)
        if matches is not None:
            found = matches.get(method)
            if found is not None:
                return found
        table = self._static.get(path)
        params: Mapping[str, str] = NO_PARAMS
        if table is None:
            for pattern, candidate in self._dynamic:
                matched = pattern.match(path)
                if matched:
                    table, params = candidate, matched.groupdict()
                    break
            else:
                return RouteMatch(None, NO_PARAMS, 404)
        route = table.get(method)
        if route is None:
            return RouteMatch(None, params, 405, tuple(sorted(table)))
        return RouteMatch(route, params)

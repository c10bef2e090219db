"""A tiny blocking HTTP/1.1 client over raw sockets, for tests that need to see the wire."""

from __future__ import annotations

import socket
import time
from collections import deque
from dataclasses import dataclass, field

import httptools

GET_FAST = b"GET /fast HTTP/1.1\r\nHost: test\r\n\r\n"
GET_FAST_CLOSE = b"GET /fast HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


def get(path: str, *extra_headers: str) -> bytes:
    headers = "".join(f"{h}\r\n" for h in extra_headers)
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode()


@dataclass
class Answer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Reader:
    """Reads the responses that arrive on one socket, in order (pipelining included)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._parser = httptools.HttpResponseParser(self)
        self._current = Answer()
        self._complete: deque[Answer] = deque()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._current = Answer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self._current.body += body

    def on_message_complete(self) -> None:
        self._current.status = self._parser.get_status_code()
        self._complete.append(self._current)

    def response(self) -> Answer:
        while not self._complete:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed before the response was complete")
            self._parser.feed_data(data)
        return self._complete.popleft()


def head_of(sock: socket.socket) -> bytes:
    """Raw bytes up to the end of the header section (for HEAD, which has no body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def connect(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def exchange(port: int, request: bytes) -> Answer:
    with connect(port) as sock:
        sock.sendall(request)
        return Reader(sock).response()


def close_kind(sock: socket.socket, timeout: float = 5.0) -> str:
    """After the last response: 'fin' (orderly close), 'reset', or 'open' (nothing came)."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return "fin"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "open"


def timed_requests(port: int, request: bytes, count: int) -> list[float]:
    """Latency in ms of ``count`` sequential requests on one keep-alive connection."""
    latencies = []
    with connect(port) as sock:
        reader = Reader(sock)
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(request)
            reader.response()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies

"""Small servers on 127.0.0.1 for the generator's TLS tests, each in a thread of its own loop:
an HTTPS responder with the lab's certificate (its versions and resumption chosen), a WSS
echo (the websockets library's server), and one that accepts TCP and never answers the
handshake.

They answer every request with one short 200, keep-alive unless the request says close, so
that a test sees the generator's side only: what it negotiated, timed and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from typing import Any

from lab.tls import server_context

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
CLOSING_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class Responder(asyncio.Protocol):
    """One 200 per request head; closes after answering ``Connection: close``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if b"connection: close" in head.lower():
                self.transport.write(CLOSING_ANSWER)
                self.transport.close()
                return
            self.transport.write(ANSWER)


class Silent(asyncio.Protocol):
    """Takes the connection and every byte, and never says a word (a stalled handshake)."""

    def data_received(self, data: bytes) -> None:
        pass


@contextlib.contextmanager
def serving(protocol: type[asyncio.Protocol], context: ssl.SSLContext | None = None) -> Iterator[int]:
    """A server of ``protocol`` (over TLS with ``context``) on 127.0.0.1; yields its port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    async def start() -> asyncio.Server:
        server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=context)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(start())
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "the test server did not start"
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextlib.contextmanager
def https_server(*, min_version: str = "1.2", max_version: str = "1.3",
                 session_tickets: bool = True) -> Iterator[int]:
    """An HTTPS responder with the lab's certificate; yields its port."""
    context = server_context(min_version=min_version, max_version=max_version,
                             session_tickets=session_tickets)
    with serving(Responder, context) as port:
        yield port


@contextlib.contextmanager
def wss_echo_server() -> Iterator[int]:
    """A WebSocket echo over TLS with the lab's certificate; yields its port."""
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    loop = asyncio.new_event_loop()
    started: list[Any] = []
    ready = threading.Event()

    async def start() -> None:
        server = await serve(echo, "127.0.0.1", 0, ssl=server_context())
        started.append(server)
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()
        started[0].close()
        loop.run_until_complete(started[0].wait_closed())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "the WSS server did not start"
    try:
        yield started[0].sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


class Hangup(asyncio.Protocol):
    """Reads the ClientHello and closes the connection without a word."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.close()


@contextlib.contextmanager
def stalled_handshake_server() -> Iterator[int]:
    with serving(Silent) as port:
        yield port

"""The barest uvloop + httptools server: ``OK`` to every request, in one of two read styles.

Two peers that differ only in how asyncio hands them the bytes, so the read path itself can be
compared with everything else taken away (docs/many-connections.md):

- ``protocol``: ``asyncio.Protocol``, ``data_received(bytes)`` -- the loop reads into a buffer of
  its own and hands over a fresh ``bytes``;
- ``buffered``: ``asyncio.BufferedProtocol``, ``get_buffer``/``buffer_updated`` -- the loop
  reads straight into the protocol's buffer.

At a thousand connections the second one, on uvloop, keeps some connections waiting for a
second and more; that is what the lab's generator must be able to see. Run it as
``python -m lab.peers.bare --style buffered --port 8080``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import httptools

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nOK"
READ_BUFFER_BYTES = 64 * 1024
STYLES = ("protocol", "buffered")
READY_LINE = "listening on "


class _Answering:
    """What both styles share: one parser per connection, one ``OK`` per complete request,
    after ``work_ns`` of busy work (a handler's cost; 0 by default)."""

    transport: asyncio.Transport | None = None
    work_ns = 0

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def on_message_complete(self) -> None:
        if self.work_ns:
            until = time.perf_counter_ns() + self.work_ns
            while time.perf_counter_ns() < until:
                pass
        if self.transport is not None:
            self.transport.write(ANSWER)

    def _feed(self, data: Any) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()


class PlainProtocol(_Answering, asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        self._feed(data)


class BufferedProtocol(_Answering, asyncio.BufferedProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.buffer = memoryview(bytearray(READ_BUFFER_BYTES))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._feed(self.buffer[:nbytes])


async def serve(style: str, host: str, port: int) -> None:
    factory = BufferedProtocol if style == "buffered" else PlainProtocol
    server = await asyncio.get_running_loop().create_server(factory, host, port, backlog=4096)
    bound = server.sockets[0].getsockname()
    print(f"{READY_LINE}http://{bound[0]}:{bound[1]}/ ({style})", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.peers.bare", description=__doc__.splitlines()[0])
    parser.add_argument("--style", choices=STYLES, default="protocol",
                        help="how the loop hands the bytes over [default: protocol]")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--work-us", type=float, default=0.0,
                        help="busy work per request, in microseconds, as a handler would do [default: 0]")
    options = parser.parse_args(argv)
    _Answering.work_ns = round(options.work_us * 1000)
    import uvloop

    try:
        uvloop.run(serve(options.style, options.host, options.port))
    except KeyboardInterrupt:
        pass
    except OSError as error:
        print(f"lab.peers.bare: cannot listen on {options.host}:{options.port}: {error.strerror}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

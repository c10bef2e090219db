"""The forwarder: what puts a server the lab did not start behind an emulated path.

    python -m lab.netpath.forwarder --namespace labnp-123-0 --listen 198.19.0.2:8000 \
        --to 127.0.0.1:8000

A server the lab starts behind a path listens inside the path's namespace; a server someone
else started (uvicorn, nginx, a Go service) listens on this namespace's loopback, which the
path's namespace cannot reach. So this process listens where the lab's server would -- on the
path's server address, its socket made inside the path's namespace -- and joins every
connection it accepts to a new connection to the target, made back in the caller's namespace.
Everything a client sends crosses the relay, packet by packet, before it reaches this process:
the handshake, slow start, loss and retransmission of the emulated path are real TCP between
the client and the forwarder. Only the last hop, forwarder to target, is loopback.

What the last hop changes, and why it is small: the forwarder writes every byte as soon as it
reads it (TCP_NODELAY on both sides, no buffering of its own), so a request leaves for the
target when its last packet has crossed the path, and an answer starts back as soon as the
target writes it. A target's own Nagle stall still shows (it waits on the forwarder's delayed
ACK over loopback, as it would wait on a client's). What does not reach the path is the
target's own send buffer and congestion window: on the path, the forwarder's socket is the
sender (docs/netpath.md says so where it measures them).

Like the relay, it prints one JSON line when ready (or why not) and dies with its owner: its
stdin is a pipe from the owner (end of file: the owner is gone), it polls getppid() and the
namespace's name every 100 ms (the relay removes the name when its owner dies, and a stale
run's name is removed at the next start), and it exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from typing import cast

import uvloop

from lab.netpath.relay import reply
from lab.netpath.system import NETNS_DIR, inside_namespace

LISTEN_BACKLOG = 1024
WATCH_SECONDS = 0.1  # how often the owner and the namespace are looked for
CONNECT_TIMEOUT_SECONDS = 5.0


def split_address(text: str) -> tuple[str, int]:
    """``198.19.0.2:8000`` or ``[::1]:8000`` -> (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Side(asyncio.Protocol):
    """One socket of a forwarded connection: what it reads, its partner writes.

    Back-pressure both ways: when a side cannot write as fast as its partner reads, the
    partner stops reading (so the kernel's window, not this process's memory, holds the
    difference). A half-close is passed on as one; the pair closes when both halves have.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.partner: Side | None = None
        self.waiting: list[bytes] = []  # read before the partner's connection was made
        self.ended = False  # this side sent its end of file

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:  # the forwarder must add no Nagle wait of its own
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def join(self, partner: Side) -> None:
        self.partner, partner.partner = partner, self
        for side in (self, partner):
            for data in side.waiting:
                side.pass_on(data)
            side.waiting.clear()
            if side.ended:
                side.end()

    def data_received(self, data: bytes) -> None:
        if self.partner is None:
            self.waiting.append(data)
        else:
            self.pass_on(data)

    def pass_on(self, data: bytes) -> None:
        assert self.partner is not None and self.partner.transport is not None
        self.partner.transport.write(data)

    def eof_received(self) -> bool:
        self.ended = True
        if self.partner is not None:
            self.end()
        return True  # keep the socket: the other direction may still be talking

    def end(self) -> None:
        partner = self.partner
        assert partner is not None and partner.transport is not None
        if partner.transport.can_write_eof():
            partner.transport.write_eof()
        if partner.ended:  # both halves closed: the pair is done
            self.close()
            partner.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.partner is not None and self.partner.transport is not None:
            if exc is None:
                self.partner.transport.close()  # what it still holds is written first
            else:
                self.partner.transport.abort()  # a reset is passed on as one

    def pause_writing(self) -> None:
        if self.partner is not None and self.partner.transport is not None:
            self.partner.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.partner is not None and self.partner.transport is not None:
            self.partner.transport.resume_reading()


class ClientSide(Side):
    """The connection that came over the path: it opens its partner, to the target."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__()
        self.target = target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self.open_partner())

    async def open_partner(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, target_side = await asyncio.wait_for(
                loop.create_connection(Side, *self.target), CONNECT_TIMEOUT_SECONDS)
        except (OSError, TimeoutError):
            # the target is gone: the client sees a reset, as it would from the target itself
            if self.transport is not None:
                self.transport.abort()
            return
        if self.transport is None or self.transport.is_closing():
            target_side.close()
            return
        self.join(target_side)


async def forward(listener: socket.socket, target: tuple[str, int], namespace: str) -> None:
    loop = asyncio.get_running_loop()
    finished = loop.create_future()

    def finish() -> None:
        if not finished.done():
            finished.set_result(None)

    def owner_spoke() -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            finish()  # end of file: the owner is gone

    owner = os.getppid()

    def watch() -> None:
        if os.getppid() != owner or not (NETNS_DIR / namespace).exists():
            finish()
        else:
            loop.call_later(WATCH_SECONDS, watch)

    loop.add_reader(sys.stdin.fileno(), owner_spoke)
    loop.add_signal_handler(signal.SIGTERM, finish)
    loop.call_later(WATCH_SECONDS, watch)
    server = await loop.create_server(lambda: ClientSide(target), sock=listener)
    reply({"ready": True, "pid": os.getpid()})
    await finished
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.netpath.forwarder")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--to", required=True, metavar="HOST:PORT")
    arguments = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's: it stops us in order
    try:
        host, port = split_address(arguments.listen)
        target = split_address(arguments.to)
        with inside_namespace(arguments.namespace):  # only the listener lives there
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(LISTEN_BACKLOG)
            listener.setblocking(False)
    except Exception as error:  # any failure is one line for the owner
        reply({"error": f"{type(error).__name__}: {error}"})
        return 1
    uvloop.run(forward(listener, target, arguments.namespace))
    return 0


if __name__ == "__main__":
    sys.exit(main())

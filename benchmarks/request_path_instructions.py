"""Instructions per request on the server's own path, counted by callgrind: a noise-free measure.

wrk's requests/s move by 10-20 % between rounds on a shared 2-core machine; callgrind counts
the instructions a process executes, which do not depend on what else the machine is doing.
This feeds N distinct keep-alive requests (the shape benchmarks/distinct_requests.lua sends:
request line, Host, one "X-Id" header) to one server connection with no sockets, once with
N and once with none, and divides the difference by N; again with the compiled head scanner
(lab/http/_headscan.c) switched off, so that every head goes through httptools' callbacks.
Beside it, the same for a bare
uvloop-style protocol (httptools with a single callback writing a prebuilt answer) and for
one with an empty callback per httptools event: the floor any httptools server has, and
what the callbacks alone cost.

    .venv/bin/python benchmarks/request_path_instructions.py            # needs valgrind
    .venv/bin/python benchmarks/request_path_instructions.py --requests 50000

What it leaves out is the same for every variant: the socket reads and writes, and uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys

import httptools
from counting_transport import CountingTransport

VARIANTS = ("lab", "lab-llhttp-only", "one-callback", "every-callback")
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def distinct_requests(count: int) -> list[bytes]:
    return [b"GET /fast HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Id: %05d\r\n\r\n" % (i % 100_000)
            for i in range(count)]


class OneCallback:
    """The floor: llhttp parses every byte, Python hears only of a complete message."""

    def __init__(self, transport: CountingTransport) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport = transport

    def on_message_complete(self) -> None:
        self.transport.write(ANSWER)


class EveryCallback(OneCallback):
    """As above, plus an empty Python call for each event a real server has to hear of."""

    def on_message_begin(self) -> None:
        pass

    def on_url(self, url: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        pass

    def on_headers_complete(self) -> None:
        pass


def feed(variant: str, count: int) -> None:
    """Runs under callgrind: answers ``count`` requests the ``variant`` way."""
    requests = distinct_requests(count)
    transport = CountingTransport()
    if variant.startswith("lab"):
        import lab.http.connection
        from lab.http.config import ServerConfig
        from lab.http.connection import HttpConnection
        from lab.http.demo_routes import demo_router
        from lab.http.state import ServerState

        if variant == "lab-llhttp-only":  # the compiled head scanner off: every head via callbacks
            lab.http.connection.scan_head = None
        connection = HttpConnection(ServerState(ServerConfig(), demo_router(), asyncio.new_event_loop()))
        connection.connection_made(transport)
        for request in requests:  # what uvloop does for each read
            connection.get_buffer(-1)[:len(request)] = request
            connection.buffer_updated(len(request))
    else:
        protocol = OneCallback(transport) if variant == "one-callback" else EveryCallback(transport)
        for request in requests:
            buffer = bytearray(request)  # as the lab's read buffer: the same copy for each
            protocol.parser.feed_data(memoryview(buffer))
    if transport.writes != count:
        raise SystemExit(f"{variant}: {transport.writes} answers to {count} requests")


def instructions(variant: str, count: int) -> int:
    completed = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--feed", variant, "--requests", str(count)],
        capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", completed.stderr)
    if completed.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run of {variant} failed:\n{completed.stderr[-2000:]}")
    return int(found[1])


def per_request(variant: str, count: int) -> float:
    return (instructions(variant, count) - instructions(variant, 0)) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per measured run")
    parser.add_argument("--feed", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        feed(args.feed, args.requests)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("request_path_instructions: needs valgrind (apt-get install valgrind)")
    counts = {variant: per_request(variant, args.requests) for variant in VARIANTS}
    floor = counts["one-callback"]
    print(f"instructions per request ({args.requests:,} distinct requests, callgrind)")
    for variant, count in counts.items():
        print(f"  {variant:15s} {count:8,.0f}   ×{count / floor:.2f} of one-callback")


if __name__ == "__main__":
    main()

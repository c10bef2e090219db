"""What an idle keep-alive connection costs a server in memory, and whether it is given back.

Starts a server (the lab by default, in a process of its own), opens N connections that each
send one request, read the answer and then sit idle, and reads the server's resident memory
(VmRSS) before, with the connections open, and after they close -- for several rounds, so
memory kept after a round shows as growth from round to round.

    .venv/bin/python benchmarks/idle_connections.py                      # lab, 5000 connections
    .venv/bin/python benchmarks/idle_connections.py -n 3000 --rounds 3
    .venv/bin/python benchmarks/idle_connections.py --peer nginx
    .venv/bin/python benchmarks/idle_connections.py --lab-args="--read-buffer 262144"

The figure that matters is kB per open connection (RSS with them open minus RSS before,
divided by N); the kernel's socket buffers are not in it (they are not the process's memory).
"""

from __future__ import annotations

import argparse
import shlex
import socket
import sys
import time
from dataclasses import dataclass

from lab.errors import PeerError, PeerUnavailable
from lab.peers.servers import LOOPBACK, PEER_NAMES, Peer, start_peer
from lab.resources import raise_open_file_limit, resident_kib

REQUEST = b"GET /fast HTTP/1.1\r\nHost: bench\r\n\r\n"
SETTLE_S = 0.5  # after the last answer: the server may still be finishing its accounting
KIB = 1024


@dataclass(frozen=True)
class Round:
    before_kb: int
    open_kb: int
    after_kb: int
    connections: int

    @property
    def per_connection_kb(self) -> float:
        return (self.open_kb - self.before_kb) / self.connections


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, each having had one answer, now idle."""
    connections = []
    for _ in range(count):
        conn = socket.create_connection((LOOPBACK, port), timeout=10)
        conn.sendall(REQUEST)
        connections.append(conn)
    for conn in connections:
        answer = conn.recv(4096)
        if not answer.startswith(b"HTTP/1.1 200"):
            raise PeerError(f"unexpected answer: {answer[:60]!r}")
    return connections


def measure_round(peer: Peer, count: int) -> Round:
    before = resident_kib(peer.pid)
    connections = open_idle(peer.port, count)
    time.sleep(SETTLE_S)
    opened = resident_kib(peer.pid)
    for conn in connections:
        conn.close()
    time.sleep(SETTLE_S * 2)
    return Round(before, opened, resident_kib(peer.pid), count)


def at_least_one(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--connections", type=at_least_one, default=5000,
                        help="idle connections per round")
    parser.add_argument("--rounds", type=at_least_one, default=2, help="open and close them this many times")
    parser.add_argument("--peer", default="lab", choices=PEER_NAMES)
    parser.add_argument("--lab-args", default="", help="extra flags for the lab server, quoted")
    options = parser.parse_args(argv)
    raise_open_file_limit()
    extra = ["--keepalive-timeout", "600", *shlex.split(options.lab_args)] if options.peer == "lab" else []
    try:
        peer = start_peer(options.peer, extra_args=extra)
    except (PeerUnavailable, PeerError) as error:
        print(f"idle_connections: {error}", file=sys.stderr)
        return 2
    with peer:
        print(f"{options.peer}: {options.connections} idle keep-alive connections, {options.rounds} rounds")
        print(f"{'round':>5} {'RSS before':>11} {'RSS open':>10} {'RSS closed':>11} {'kB/conn':>8}")
        for number in range(1, options.rounds + 1):
            result = measure_round(peer, options.connections)
            print(f"{number:>5} {result.before_kb / KIB:>8.1f} MB {result.open_kb / KIB:>7.1f} MB "
                  f"{result.after_kb / KIB:>8.1f} MB {result.per_connection_kb:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tail latency at many connections: servers against clients, pinned, one table.

For each server (the lab, nginx with one worker, uvicorn, and the bare uvloop + httptools
server in its two read styles, lab/peers/bare.py) and each connection count, every client
runs once against the same server process: wrk, and the lab's generator opening its
connections with the load (``--connect with-load``, wrk's pattern) and before the run
(``--connect before``). The server is pinned to one core, each client to the other.

    .venv/bin/python benchmarks/many_connections.py                          # everything, 5 s each
    .venv/bin/python benchmarks/many_connections.py -c 1000 --servers lab,nginx -d 5
    .venv/bin/python benchmarks/many_connections.py --clients wrk --json

What to read: the max and p99 columns at 1000 connections. A server that keeps connections
waiting to be accepted (docs/many-connections.md) shows a max of seconds with wrk; a client
that opens its connections before the clock starts does not see it. Compare within one run:
absolute figures move with the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass

from lab.errors import PeerError, PeerUnavailable, PinningError, WrkError
from lab.peers.pinning import pinned_command, server_and_load_cores
from lab.peers.servers import PEER_NAMES, Peer, start_peer
from lab.peers.wrk import WrkLoad, run_wrk
from lab.resources import raise_open_file_limit

DEFAULT_SERVERS = ("lab", "nginx", "uvicorn", "bare-protocol", "bare-buffered")
DEFAULT_CONNECTIONS = (50, 200, 500, 1000)
CLIENTS = ("wrk", "lab-with-load", "lab-before")
TIMEOUT_S = 5  # a request slower than this is a timeout, for every client alike


@dataclass(frozen=True)
class Row:
    server: str
    connections: int
    client: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int


def measure_wrk(peer: Peer, connections: int, duration_s: int, cores: tuple[int, ...] | None) -> Row:
    result = run_wrk(peer.url + "/", WrkLoad(connections=connections, duration_s=duration_s,
                                             timeout_s=TIMEOUT_S), cores=cores)
    errors = result.socket_errors.timeout + result.socket_errors.read + result.socket_errors.connect
    return Row(peer.name, connections, "wrk", result.requests_per_s, result.percentile_ms(50),
               result.percentile_ms(99), result.latency_max_ms, errors)


def measure_lab(peer: Peer, connections: int, duration_s: int, cores: tuple[int, ...] | None,
                connect: str) -> Row:
    command = pinned_command([sys.executable, "-m", "lab", "bench", peer.url + "/", "-c", str(connections),
                              "-d", str(duration_s), "--timeout", str(TIMEOUT_S), "--connect", connect,
                              "--json"], cores)
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    if not done.stdout.strip():
        raise PeerError(f"lab bench printed nothing (exit {done.returncode}): {done.stderr.strip()[-400:]}")
    report = json.loads(done.stdout)
    latency = report["latency_ms"]
    return Row(peer.name, connections, f"lab-{connect}", report["rps"], latency["p50"] or 0.0,
               latency["p99"] or 0.0, latency["max"] or 0.0, sum(report["errors"].values()))


def measure_server(name: str, counts: list[int], clients: list[str], duration_s: int) -> list[Row]:
    server_cores, load_cores = server_and_load_cores()
    rows = []
    with start_peer(name, cores=server_cores) as peer:
        for connections in counts:
            for client in clients:
                if client == "wrk":
                    row = measure_wrk(peer, connections, duration_s, load_cores)
                else:
                    row = measure_lab(peer, connections, duration_s, load_cores, client.removeprefix("lab-"))
                print_row(row)
                rows.append(row)
    return rows


def print_header() -> None:
    print(f"{'server':<14} {'conns':>5} {'client':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'errors':>6}", flush=True)


def print_row(row: Row) -> None:
    print(f"{row.server:<14} {row.connections:>5} {row.client:<14} {row.requests_per_s:>9,.0f} "
          f"{row.p50_ms:>8.2f} {row.p99_ms:>8.2f} {row.max_ms:>8.1f} {row.errors:>6}", flush=True)


def names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in allowed]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; choose from {', '.join(allowed)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=lambda text: names(text, PEER_NAMES, "server"),
                        default=list(DEFAULT_SERVERS),
                        help=f"comma-separated [default: {','.join(DEFAULT_SERVERS)}]")
    parser.add_argument("--clients", type=lambda text: names(text, CLIENTS, "client"),
                        default=list(CLIENTS), help=f"comma-separated [default: {','.join(CLIENTS)}]")
    parser.add_argument("-c", "--connections", type=lambda text: [int(n) for n in text.split(",")],
                        default=list(DEFAULT_CONNECTIONS),
                        help="comma-separated counts [default: 50,200,500,1000]")
    parser.add_argument("-d", "--duration", type=int, default=5,
                        help="whole seconds per measurement [default: 5]")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list at the end")
    options = parser.parse_args(argv)
    raise_open_file_limit()
    print_header()
    rows: list[Row] = []
    for name in options.servers:
        try:
            rows += measure_server(name, options.connections, options.clients, options.duration)
        except PeerUnavailable as missing:
            print(f"{name}: skipped: {missing}", file=sys.stderr)
        except (PeerError, WrkError, PinningError) as error:
            print(f"many_connections: {name}: {error}", file=sys.stderr)
            return 1
    if options.json:
        print(json.dumps([asdict(row) for row in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

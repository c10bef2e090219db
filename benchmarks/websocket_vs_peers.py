"""WebSocket echo: the lab server against uvicorn (both back-ends) and Node's ``ws``, in one run.

Each server runs alone, pinned to the server core; the lab's own generator
(``python -m lab bench ws://...``, one process) runs pinned to the load core, with the same
load for every server: N connections, closed loop, one small message in flight on each.
Absolute figures do not transfer between machines; the ratios printed at the end
(lab / each peer, medians over interleaved rounds) do.

    .venv/bin/python benchmarks/websocket_vs_peers.py                     # -c50 -d5, 16-byte text
    .venv/bin/python benchmarks/websocket_vs_peers.py --rounds 3 --message-bytes 1024
    .venv/bin/python benchmarks/websocket_vs_peers.py --peers lab,uvicorn-ws --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from lab.errors import PeerError, PeerUnavailable
from lab.peers.pinning import pinned_command, server_and_load_cores
from lab.peers.servers import WEBSOCKET_PEERS, start_peer

BASELINE = "lab"
WARMUP_S = 1.0  # node's JIT and every server's buffers settle before the measured part


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="measured seconds per server")
    parser.add_argument("--message-bytes", type=int, default=16)
    parser.add_argument("--message-type", choices=("text", "binary"), default="text")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every server this many times, interleaved; report medians")
    parser.add_argument("--peers", default=",".join(WEBSOCKET_PEERS),
                        help=f"comma-separated, from {','.join(WEBSOCKET_PEERS)}")
    parser.add_argument("--json", action="store_true", help="also print everything as one JSON line")
    arguments = parser.parse_args(argv)
    arguments.peers = [name.strip() for name in arguments.peers.split(",") if name.strip()]
    unknown = [name for name in arguments.peers if name not in WEBSOCKET_PEERS]
    if unknown:
        parser.error(f"unknown WebSocket peer {unknown}; choose from {', '.join(WEBSOCKET_PEERS)}")
    return arguments


def measure(name: str, arguments: argparse.Namespace) -> dict[str, Any]:
    """One server, pinned, loaded by one pinned generator process; its bench JSON report."""
    server_cores, load_cores = server_and_load_cores()
    with start_peer(name, cores=server_cores) as peer:
        command = [sys.executable, "-m", "lab", "bench", peer.ws_echo_url, "--json",
                   "--connections", str(arguments.connections), "--workers", "1",
                   "--duration", str(arguments.duration), "--warmup", str(WARMUP_S),
                   "--message-bytes", str(arguments.message_bytes),
                   "--message-type", arguments.message_type]
        done = subprocess.run(pinned_command(command, load_cores), capture_output=True, text=True,
                              timeout=arguments.duration + 60, check=False)
    if done.returncode != 0:
        raise PeerError(f"bench against {name} failed (exit {done.returncode}): {done.stderr[-500:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    rps: dict[str, list[float]] = {name: [] for name in arguments.peers}
    p50: dict[str, list[float]] = {name: [] for name in arguments.peers}
    missing: dict[str, str] = {}
    for round_index in range(arguments.rounds):
        # The order rotates each round, so a slow spell of a shared machine falls on everyone.
        shift = round_index % len(arguments.peers)
        for name in arguments.peers[shift:] + arguments.peers[:shift]:
            if name in missing:
                continue
            try:
                report = measure(name, arguments)
            except (PeerUnavailable, PeerError) as error:
                missing[name] = str(error)
                continue
            if report["errors"]:
                missing[name] = f"errors: {report['errors']}"
                continue
            rps[name].append(report["rps"])
            p50[name].append(report["latency_ms"]["p50"])
            print(f"round {round_index + 1}: {name:18} {report['rps']:>10,.0f} msgs/s  "
                  f"p50 {report['latency_ms']['p50']:.3f} ms", flush=True)
    medians = {name: statistics.median(values) for name, values in rps.items() if values}
    print(f"\nWebSocket echo, {arguments.connections} connections, {arguments.message_bytes}-byte "
          f"{arguments.message_type} messages, median of {arguments.rounds} round(s):")
    for name, value in medians.items():
        ratio = medians[BASELINE] / value if BASELINE in medians and name != BASELINE else None
        shown = f"   lab / {name} = {ratio:.2f}x" if ratio else ""
        print(f"  {name:18} {value:>10,.0f} msgs/s  p50 {statistics.median(p50[name]):.3f} ms{shown}")
    for name, why in missing.items():
        print(f"  {name:18} not measured: {why.splitlines()[0]}")
    if arguments.json:
        print(json.dumps({"rps": rps, "p50_ms": p50, "median_rps": medians, "missing": missing}))
    return 0 if BASELINE in medians else 1


if __name__ == "__main__":
    sys.exit(main())

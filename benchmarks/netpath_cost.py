"""What the emulated path's relay itself costs: added latency at delay=0 and packets/s it moves.

    .venv/bin/python benchmarks/netpath_cost.py [--requests 400] [--rounds 3] [--seconds 2]

Needs root (or CAP_NET_ADMIN). In each round, in turn: the lab server (one process, core 0)
on plain loopback and behind a path with no delay, no loss and no rate limit, each loaded at
one connection by the lab's generator (core 1) -- the difference of the p50s is what the
relay adds to a round trip (both directions, two packets each way per request). Then:

- packets/s: 64-byte UDP datagrams sent as fast as one process can (core 1) to a receiver in
  the server's namespace (core 0); what the relay read and what arrived, per second;
- bulk TCP: one connection fetching 1 MiB bodies for the given seconds, through the path and
  on loopback, in Mbit/s.

The relay itself is not pinned (there are only two cores); on a shared machine the figures
are noisy: read the ratios and differences, measured in the same run, not the absolutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time

import lab
from lab.netpath import EmulatedPath, missing_privilege
from lab.peers.pinning import pinned_command

SERVER_CORES = [0]
CLIENT_CORES = [1]
UDP_PORT = 9999
DATAGRAM = b"x" * 64
BULK_PATH = "/bytes/1048576"

# a UDP receiver run with `ip netns exec`: counts datagrams until nothing came for 0.5 s
RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(30)
count = 0
while True:
    try:
        s.recv(2048)
    except TimeoutError:
        break
    count += 1
    s.settimeout(0.5)
print(count, flush=True)
"""


def bench(url: str, *arguments: str) -> dict[str, object]:
    command = pinned_command([sys.executable, "-m", "lab", "bench", url, "-c", "1", "--json",
                              *arguments], CLIENT_CORES)
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout
    report: dict[str, object] = json.loads(output)
    return report


def start(path: str | None) -> lab.ServerHandle:
    server = lab.start_server(isolation="process", path=path)
    for pid in server.pids:
        subprocess.run(["taskset", "-pc", ",".join(map(str, SERVER_CORES)), str(pid)],
                       capture_output=True, check=False)
    return server


def p50_ms(url: str, requests: int) -> float:
    report = bench(url + "/fast", "--max-requests", str(requests), "--duration", "120")
    return float(report["latency_ms"]["p50"])  # type: ignore[index]


def bulk_mbit(url: str, seconds: float) -> float:
    report = bench(url + BULK_PATH, "--duration", str(seconds))
    return float(report["rps"]) * (1 << 20) * 8 / 1e6  # type: ignore[arg-type]


def packets_per_second(path: EmulatedPath, seconds: float) -> tuple[float, float]:
    """(read by the relay, arrived at the receiver) per second, one direction."""
    receiver = subprocess.Popen(
        pinned_command(["ip", "netns", "exec", path.namespace, sys.executable, "-c", RECEIVER,
                        path.server_address, str(UDP_PORT)], SERVER_CORES),
        stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    receiver.stdout.readline()
    before = path.stats()["to_server"]["packets"]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = (path.server_address, UDP_PORT)
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        # ENOBUFS (the device's queue is full, which is the point) ends a batch early
        with contextlib.suppress(OSError):
            for _ in range(1000):
                sender.sendto(DATAGRAM, target)
    elapsed = time.perf_counter() - began
    moved = path.stats()["to_server"]["packets"] - before
    arrived = int(receiver.stdout.readline())
    receiver.wait(10)
    return moved / elapsed, arrived / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    arguments = parser.parse_args()
    reason = missing_privilege()
    if reason is not None:
        print(f"netpath_cost: cannot build an emulated path here: {reason}")
        return 1
    loopback, behind, moved, arrived, bulk_path, bulk_loop = [], [], [], [], [], []
    for round_number in range(arguments.rounds):
        with start(None) as plain, start("delay=0ms") as emulated:
            assert emulated.path is not None
            loopback.append(p50_ms(plain.url, arguments.requests))
            behind.append(p50_ms(emulated.url, arguments.requests))
            relay_rate, arrival_rate = packets_per_second(emulated.path, arguments.seconds)
            moved.append(relay_rate)
            arrived.append(arrival_rate)
            bulk_loop.append(bulk_mbit(plain.url, arguments.seconds))
            bulk_path.append(bulk_mbit(emulated.url, arguments.seconds))
        print(f"round {round_number + 1}: p50 loopback {loopback[-1]:.3f} ms, path {behind[-1]:.3f} ms; "
              f"relay {moved[-1]:,.0f} packets/s ({arrived[-1]:,.0f}/s arrived); "
              f"bulk {bulk_path[-1]:,.0f} vs {bulk_loop[-1]:,.0f} Mbit/s", flush=True)
    median = statistics.median
    print(f"\nmedians over {arguments.rounds} rounds (one connection, keep-alive, /fast):")
    print(f"  p50 on loopback          {median(loopback):8.3f} ms")
    print(f"  p50 behind delay=0ms     {median(behind):8.3f} ms")
    print(f"  added by the relay       {median(behind) - median(loopback):8.3f} ms per round trip")
    print(f"  packets/s the relay read {median(moved):10,.0f} (64-byte UDP, one direction; "
          f"{median(arrived):,.0f}/s arrived)")
    print(f"  bulk TCP through path    {median(bulk_path):10,.0f} Mbit/s "
          f"(loopback {median(bulk_loop):,.0f} Mbit/s, x{median(bulk_path) / median(bulk_loop):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The lab's load generator against wrk, same server, same connections, in one run.

    .venv/bin/python benchmarks/loadgen_vs_wrk.py [--servers nginx lab] [--duration 3] [--rounds 5]

The server under test (lab.peers.servers: nginx as one process, or the lab server with one worker)
is pinned to core 0; wrk (lab.peers.wrk) and the lab's generator (``python -m lab bench``) are
each pinned to core 1 and take turns, round after round, so that a noisy neighbour hurts
both alike. Per server it prints requests/s at 50 connections and p50 latency at 1
connection for both tools, then the ratios the issue sets targets for -- generator/wrk
requests/s >= 0.9, p50 <= 1.25x wrk's -- from the medians over rounds and from each tool's
best round.

wrk runs with one thread (-t1): it has one core, and a second thread would only share it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

from lab.peers.pinning import pinned_command
from lab.peers.servers import start_peer
from lab.peers.wrk import WrkLoad, run_wrk

SERVER_CORES = [0]
CLIENT_CORES = [1]


@dataclass(frozen=True)
class Measurement:
    rps: float
    p50_ms: float


def run_wrk_once(url: str, connections: int, duration: int) -> Measurement:
    result = run_wrk(url, WrkLoad(threads=1, connections=connections, duration_s=duration),
                     cores=CLIENT_CORES)
    return Measurement(rps=result.requests_per_s, p50_ms=result.percentile_ms(50))


def run_generator(url: str, connections: int, duration: int) -> Measurement:
    command = pinned_command([sys.executable, "-m", "lab", "bench", url, "--connections",
                              str(connections), "--duration", str(duration), "--json"], CLIENT_CORES)
    output = subprocess.run(command, capture_output=True, text=True, check=True,
                            timeout=duration + 60).stdout
    report = json.loads(output)
    if report["errors"]:
        print(f"    (generator saw errors: {report['errors']})")
    return Measurement(rps=report["rps"], p50_ms=report["latency_ms"]["p50"])


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def compare(server_name: str, url: str, duration: int, rounds: int) -> dict[str, float]:
    figures: dict[str, list[float]] = {key: [] for key in (
        "wrk_rps_50", "lab_rps_50", "wrk_p50_1", "lab_p50_1")}
    for round_number in range(1, rounds + 1):
        # Alternate which tool goes first, so neither always meets a warmer server.
        order = [("wrk", run_wrk_once), ("lab", run_generator)]
        if round_number % 2 == 0:
            order.reverse()
        for tool, runner in order:
            many = runner(url, 50, duration)
            one = runner(url, 1, duration)
            figures[f"{tool}_rps_50"].append(many.rps)
            figures[f"{tool}_p50_1"].append(one.p50_ms)
            print(f"  round {round_number} {tool:>3}: {many.rps:>10,.0f} req/s at 50 connections, "
                  f"p50 {one.p50_ms * 1000:7.1f} us at 1 connection")
    result: dict[str, float] = {}
    # Medians, and best-of-rounds: on a shared machine interference only ever slows a tool
    # down, so each tool's best round is the better estimate of what it can do.
    for statistic, pick_rps, pick_latency in (("median", median, median), ("best", max, min)):
        lab_rps, wrk_rps = pick_rps(figures["lab_rps_50"]), pick_rps(figures["wrk_rps_50"])
        lab_p50, wrk_p50 = pick_latency(figures["lab_p50_1"]), pick_latency(figures["wrk_p50_1"])
        result[f"{statistic}_rps_ratio"] = lab_rps / wrk_rps
        result[f"{statistic}_p50_ratio"] = lab_p50 / wrk_p50
        print(f"{server_name} ({statistic} of {rounds}): generator/wrk requests/s at 50 connections = "
              f"{lab_rps / wrk_rps:.2f} ({lab_rps:,.0f} / {wrk_rps:,.0f}; target >= 0.90)")
        print(f"{server_name} ({statistic} of {rounds}): generator/wrk p50 at 1 connection = "
              f"{lab_p50 / wrk_p50:.2f} ({lab_p50 * 1000:.1f} us / {wrk_p50 * 1000:.1f} us; target <= 1.25)")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", nargs="+", choices=["nginx", "lab"], default=["nginx", "lab"])
    parser.add_argument("--duration", type=int, default=3, help="whole seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("needs two cores: one for the server, one for the generators", file=sys.stderr)
        return 2
    summary = {}
    for name in arguments.servers:
        print(f"== {name} on cores {SERVER_CORES}, clients on cores {CLIENT_CORES}, "
              f"{arguments.duration} s per measurement, {arguments.rounds} rounds")
        with start_peer(name, cores=SERVER_CORES) as server:
            summary[name] = compare(name, server.fast_url, arguments.duration, arguments.rounds)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

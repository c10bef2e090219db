"""What the live view costs the generator: its request rate with live frames on vs off.

    .venv/bin/python benchmarks/live_view_cost.py [--server nginx|lab] [--duration 3] [--rounds 6]

The server (nginx with one worker by default: faster than the generator, so the generator's
own speed sets the rate; or the lab server) is pinned to core 0; the generator (its parent and
its worker process) is pinned to core 1. Each measurement is a closed-loop run as fast as the
server answers; the parent polls the run every 100 ms either way, and with frames on it also
reads and merges them (``run.live_frames()``) as the live view does. Rounds alternate which
setting goes first. Prints every run's requests/s and the generator's CPU time per request
(its worker's process time while offering the load: less disturbed by neighbours than a rate),
the medians and the on/off ratios, and the share of the generator's CPU spent making and sending
frames (timed inside the worker: the figure a busy machine disturbs least); the issue's bar is a
rate ratio within 5 % of 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from lab.engine.spec import LoadSpec
from lab.loadgen import start_load
from lab.peers.pinning import pinned_command
from lab.peers.servers import start_peer

SERVER_CORES = [0]
CLIENT_CORES = [1]
POLL_SECONDS = 0.1


def one_run(url: str, live: bool, duration: float, connections: int) -> dict[str, float]:
    """A single run in this process (the generator's parent), polled as a notebook would."""
    run = start_load(LoadSpec(url=url, connections=connections, duration_seconds=duration), live=live)
    frames = 0
    while not run.done():
        run.progress()
        frames += len(run.live_frames())
        time.sleep(POLL_SECONDS)
    result = run.result()
    frames += len(run.live_frames())
    cpu_us = run.generator_cpu_seconds * 1e6 / max(result.samples.size, 1)
    share = run.live_cpu_seconds / max(run.generator_cpu_seconds, 1e-9)
    return {"rps": result.rps, "frames": frames, "dropped": run.frames_dropped,
            "requests": result.summary.requests, "cpu_us_per_request": cpu_us,
            "frames_cpu_share": share}


def measure(url: str, live: bool, duration: float, connections: int) -> dict[str, float]:
    command = pinned_command([sys.executable, __file__, "--one", "on" if live else "off", "--url", url,
                              "--duration", str(duration), "--connections", str(connections)],
                             CLIENT_CORES)
    output = subprocess.run(command, capture_output=True, text=True, check=True,
                            timeout=duration + 60).stdout
    figures: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["nginx", "lab"], default="nginx",
                        help="the server under the load (default nginx: faster than the generator)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--one", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one is not None:
        print(json.dumps(one_run(arguments.url, arguments.one == "on", arguments.duration,
                                 arguments.connections)))
        return 0
    if (os.cpu_count() or 1) < 2:
        print("needs two cores: one for the server, one for the generator", file=sys.stderr)
        return 2
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    shares: list[float] = []
    print(f"{arguments.server} on cores {SERVER_CORES}, generator on cores {CLIENT_CORES}, "
          f"{arguments.connections} connections, {arguments.duration:g} s per run, {arguments.rounds} rounds")
    with start_peer(arguments.server, cores=SERVER_CORES) as server:
        for round_number in range(1, arguments.rounds + 1):
            order = [False, True] if round_number % 2 else [True, False]
            for live in order:
                figures = measure(server.fast_url, live, arguments.duration, arguments.connections)
                rates[live].append(figures["rps"])
                cpu[live].append(figures["cpu_us_per_request"])
                extra = ""
                if live:
                    shares.append(figures["frames_cpu_share"])
                    extra = (f", {figures['frames']:.0f} frames, {figures['dropped']:.0f} dropped, "
                             f"{100 * figures['frames_cpu_share']:.2f} % of the CPU in frames")
                print(f"  round {round_number} live {'on ' if live else 'off'}: "
                      f"{figures['rps']:>10,.0f} req/s, {figures['cpu_us_per_request']:.2f} us CPU "
                      f"per request{extra}")
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    cpu_on, cpu_off = statistics.median(cpu[True]), statistics.median(cpu[False])
    per_round = [a / b for a, b in zip(rates[True], rates[False], strict=True)]
    print(f"median requests/s: live on {on:,.0f}, live off {off:,.0f}; on/off = {on / off:.3f}; "
          f"median of the per-round ratios {statistics.median(per_round):.3f} (rounds "
          f"{min(per_round):.3f}-{max(per_round):.3f}; bar: within 0.95-1.05)")
    print(f"median generator CPU per request: live on {cpu_on:.3f} us, live off {cpu_off:.3f} us; "
          f"on/off = {cpu_on / cpu_off:.3f}")
    print(f"making and sending frames took {100 * statistics.median(shares):.2f} % of the generator's "
          f"CPU (median; rounds {100 * min(shares):.2f}-{100 * max(shares):.2f} %)")
    print(json.dumps({"on_rps": on, "off_rps": off, "ratio": on / off,
                      "median_round_ratio": statistics.median(per_round), "per_round": per_round,
                      "cpu_us_on": cpu_on, "cpu_us_off": cpu_off, "cpu_ratio": cpu_on / cpu_off,
                      "frames_cpu_share": statistics.median(shares)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

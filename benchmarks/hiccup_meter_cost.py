"""What the generator's hiccup meter costs: one tick's work, and the generator's CPU per request
and requests/s with ``hiccup_meter`` on vs off.

    .venv/bin/python benchmarks/hiccup_meter_cost.py [--server nginx|lab] [--duration 3] [--rounds 6]

First a tick is timed alone (timeit, best of 7 repeats: the figure a busy machine disturbs
least), with its next timer scheduled as on a running loop. Then, as
benchmarks/live_view_cost.py does, closed-loop runs against a server pinned to core 0, the
generator pinned to core 1, rounds alternating which setting goes first; the generator's CPU
per request is its worker's process time while offering the load. With the meter off nothing
is scheduled on the loop, so "off" is the generator as it always was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import timeit

import uvloop

from lab.engine.spec import LoadSpec
from lab.loadgen import start_load
from lab.peers.pinning import pinned_command
from lab.peers.servers import start_peer
from lab.resources import DEFAULT_TICK_S, HiccupMeter

SERVER_CORES = [0]
CLIENT_CORES = [1]
TICKS_TIMED = 50_000


def tick_seconds() -> float:
    """One tick's work with its next timer (then cancelled, as a fired timer leaves the heap)."""
    loop = uvloop.new_event_loop()
    meter = HiccupMeter()
    meter.start(loop)

    def one_tick() -> None:
        meter._tick()
        assert meter._timer is not None
        meter._timer.cancel()

    try:
        return min(timeit.repeat(one_tick, number=TICKS_TIMED, repeat=7)) / TICKS_TIMED
    finally:
        meter.stop()
        loop.close()


def one_run(url: str, meter: bool, duration: float, connections: int) -> dict[str, float]:
    run = start_load(LoadSpec(url=url, connections=connections, duration_seconds=duration,
                              hiccup_meter=meter))
    result = run.result(timeout=duration + 60)
    return {"rps": result.rps,
            "cpu_us_per_request": run.generator_cpu_seconds * 1e6 / max(result.samples.size, 1)}


def measure(url: str, meter: bool, duration: float, connections: int) -> dict[str, float]:
    command = pinned_command([sys.executable, __file__, "--one", "on" if meter else "off", "--url", url,
                              "--duration", str(duration), "--connections", str(connections)],
                             CLIENT_CORES)
    output = subprocess.run(command, capture_output=True, text=True, check=True,
                            timeout=duration + 90).stdout
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
    tick = tick_seconds()
    print(f"one tick: {tick * 1e9:.0f} ns; at {1 / DEFAULT_TICK_S:.0f} ticks/s, "
          f"{tick / DEFAULT_TICK_S * 100:.2f} % of a core")
    if (os.cpu_count() or 1) < 2:
        print("the runs need two cores: one for the server, one for the generator", file=sys.stderr)
        return 2
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    print(f"{arguments.server} on cores {SERVER_CORES}, generator on cores {CLIENT_CORES}, "
          f"{arguments.connections} connections, {arguments.duration:g} s per run, {arguments.rounds} rounds")
    with start_peer(arguments.server, cores=SERVER_CORES) as server:
        for round_number in range(1, arguments.rounds + 1):
            for meter in ([False, True] if round_number % 2 else [True, False]):
                figures = measure(server.fast_url, meter, arguments.duration, arguments.connections)
                rates[meter].append(figures["rps"])
                cpu[meter].append(figures["cpu_us_per_request"])
                print(f"  round {round_number} meter {'on ' if meter else 'off'}: {figures['rps']:>10,.0f} "
                      f"req/s, {figures['cpu_us_per_request']:.2f} us CPU per request")
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    cpu_on, cpu_off = statistics.median(cpu[True]), statistics.median(cpu[False])
    per_round = [a / b for a, b in zip(cpu[True], cpu[False], strict=True)]
    print(f"median requests/s: meter on {on:,.0f}, off {off:,.0f}; on/off = {on / off:.3f}")
    print(f"median generator CPU per request: meter on {cpu_on:.3f} us, off {cpu_off:.3f} us; "
          f"on/off = {cpu_on / cpu_off:.3f} (per-round ratios {min(per_round):.3f}-{max(per_round):.3f})")
    print(json.dumps({"tick_ns": tick * 1e9, "on_rps": on, "off_rps": off, "cpu_us_on": cpu_on,
                      "cpu_us_off": cpu_off, "cpu_ratio": cpu_on / cpu_off, "per_round_cpu": per_round}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The lab's server hosting an ASGI app against uvicorn and granian hosting the same app, by wrk.

Two apps, each served by all three servers, one worker each: the raw ASGI ``ok_app``
(lab/peers/apps.py: two prebuilt messages, so the server's own cost is what is measured) and
a Starlette app (lab/peers/starlette_app.py: routing and a PlainTextResponse, the cost a
framework adds). The lab runs ``python -m lab serve --app``, uvicorn ``--loop uvloop --http
httptools``, granian ``--interface asgi --loop uvloop`` with one runtime thread; each is
pinned to the server core and wrk to the load core (benchmarks/server_vs_peers.py's
machinery: a fresh server per measurement, a warm-up, interleaved rounds with the order
rotated). Printed: each run, the medians, and the ratios lab / uvicorn and lab / granian per
app, of requests/s and of the server's CPU time per request (user + system time of the
server's processes -- granian's worker included -- over wrk's requests). On a shared machine
use ``--rounds N`` and read the ratios; the CPU per request moves less with the neighbours'
load than the rate does, which also depends on how much of the load core wrk got.

    .venv/bin/python benchmarks/asgi_vs_peers.py                    # wrk -t1 -c50 -d10s, 1 round
    .venv/bin/python benchmarks/asgi_vs_peers.py --rounds 3 -d5
    .venv/bin/python benchmarks/asgi_vs_peers.py --apps raw --rounds 5 -d3 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_vs_peers import SAME, Measurements, print_table

from lab.errors import PeerError, PeerUnavailable, PinningError, WrkError
from lab.peers.pinning import server_and_load_cores
from lab.peers.servers import start_peer
from lab.peers.wrk import WrkLoad, find_wrk, run_wrk

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# app -> (the lab hosting it, the peers hosting the same app)
SERVERS = {
    "raw": ("lab-asgi", ("uvicorn", "granian")),
    "starlette": ("lab-starlette", ("uvicorn-starlette", "granian-starlette")),
}
# What issue 24 asks of the lab: its rate over uvicorn's on each app.
TARGETS = {"raw": 1.5, "starlette": 1.2}


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    load = WrkLoad()
    server_cores, load_cores = server_and_load_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-t", "--threads", type=int, default=load.threads, help="wrk threads")
    parser.add_argument("-c", "--connections", type=int, default=load.connections, help="wrk connections")
    parser.add_argument("-d", "--duration", type=int, default=load.duration_s, help="seconds per server")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load first (0: none)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every server this many times, interleaved; report medians")
    parser.add_argument("--apps", choices=("raw", "starlette", "both"), default="both")
    parser.add_argument("--json", action="store_true", help="also print the medians and ratios as JSON")
    arguments = parser.parse_args(argv)
    if arguments.rounds < 1:
        parser.error("--rounds: at least 1")
    # What server_vs_peers.measure reads.
    arguments.server_cores, arguments.wrk_cores = server_cores, load_cores
    arguments.path, arguments.lab_args = "/fast", []
    return arguments


def rate(entry: Measurements) -> float:
    return statistics.median(result.requests_per_s for result in entry.results) if entry.results else 0.0


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and every process below it (granian forks its worker)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        # After the command: state, ppid, ..., utime and stime (the 14th and 15th of stat).
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total, waiting = 0.0, [pid]
    while waiting:
        process = waiting.pop()
        total += times.get(process, 0.0)
        waiting.extend(children.get(process, ()))
    return total


def measure_all(names: Sequence[str], load: WrkLoad, arguments: argparse.Namespace
                ) -> tuple[list[Measurements], dict[str, list[float]]]:
    """Interleaved rounds, the order rotated each round (as server_vs_peers), with the server's
    CPU microseconds per request of each run beside wrk's result."""
    entries = [Measurements(name, SAME) for name in names]
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(arguments.rounds):
        shift = round_number % len(entries)
        for entry in [*entries[shift:], *entries[:shift]]:
            if entry.missing:
                continue
            try:
                with start_peer(entry.name, cores=arguments.server_cores) as peer:
                    url = peer.url + arguments.path
                    if arguments.warmup > 0:
                        run_wrk(url, dataclasses.replace(load, duration_s=arguments.warmup, latency=False),
                                cores=arguments.wrk_cores)
                    before = tree_cpu_seconds(peer.pid)
                    result = run_wrk(url, load, cores=arguments.wrk_cores)
                    used = tree_cpu_seconds(peer.pid) - before
            except PeerUnavailable as unavailable:
                entry.missing = f"not available: {unavailable}"
                continue
            except (PeerError, WrkError) as failure:
                entry.missing = f"failed: {failure}"
                continue
            entry.results.append(result)
            cpu[entry.name].append(used * 1e6 / max(result.requests, 1))
    return entries, cpu


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    apps = ("raw", "starlette") if arguments.apps == "both" else (arguments.apps,)
    names = [name for app in apps for name in (SERVERS[app][0], *SERVERS[app][1])]
    try:
        find_wrk()
        load = WrkLoad(threads=arguments.threads, connections=arguments.connections,
                       duration_s=arguments.duration)
        measurements, cpu = measure_all(names, load, arguments)
    except (WrkError, PinningError, ValueError) as problem:
        print(f"asgi_vs_peers: {problem}", file=sys.stderr)
        return 2
    print(f"wrk -t{load.threads} -c{load.connections} -d{load.duration_s}s /fast; warm-up "
          f"{arguments.warmup} s; {arguments.rounds} interleaved round(s); servers on cores "
          f"{arguments.server_cores}, wrk on {arguments.wrk_cores}; {os.cpu_count()} cores here")
    print_table(measurements)
    print()
    print("server CPU per request, us (each round, median):")
    cpu_median = {name: statistics.median(values) if values else float("nan") for name, values in cpu.items()}
    for name, values in cpu.items():
        rounds = " ".join(f"{value:6.2f}" for value in values)
        print(f"  {name:<18} {rounds}   median {cpu_median[name]:6.2f}")
    by_name = {entry.name: entry for entry in measurements}
    report: dict[str, Any] = {}
    print()
    print("ratios of the medians, lab over peer (requests/s: higher is better for the lab;")
    print("CPU per request given as peer / lab, so also higher is better for the lab):")
    for app in apps:
        lab_name, peers = SERVERS[app]
        lab_rate = rate(by_name[lab_name])
        report[app] = {"requests_per_s": {name: rate(by_name[name]) for name in (lab_name, *peers)},
                       "cpu_us_per_request": {name: cpu_median[name] for name in (lab_name, *peers)}}
        for peer in peers:
            peer_rate = rate(by_name[peer])
            ratio = lab_rate / peer_rate if peer_rate else float("nan")
            cpu_ratio = cpu_median[peer] / cpu_median[lab_name]
            report[app][f"lab / {peer}"] = {"requests_per_s": ratio, "cpu_per_request": cpu_ratio}
            target = f"   (target x{TARGETS[app]:.1f})" if peer.startswith("uvicorn") else ""
            print(f"  {app:<10} lab / {peer:<18} requests/s x{ratio:.2f}   CPU per request "
                  f"x{cpu_ratio:.2f}{target}")
    if arguments.json:
        print(json.dumps(report))
    return 0 if all(entry.results for entry in measurements) else 1


if __name__ == "__main__":
    sys.exit(main())

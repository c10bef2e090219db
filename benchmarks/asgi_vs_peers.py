"""The lab's server hosting an ASGI app against uvicorn and granian hosting the same app, by wrk.

Two apps, each served by all three servers, one worker each: the raw ASGI ``ok_app``
(lab/peers/apps.py: two prebuilt messages, so the server's own cost is what is measured) and
a Starlette app (lab/peers/starlette_app.py: routing and a PlainTextResponse, the cost a
framework adds). The lab runs ``python -m lab serve --app``, uvicorn ``--loop uvloop --http
httptools``, granian ``--interface asgi --loop uvloop`` with one runtime thread; each is
pinned to the server core and wrk to the load core (benchmarks/server_vs_peers.py's
machinery: a fresh server per measurement, a warm-up, interleaved rounds with the order
rotated). Printed: each run, the medians, and the ratios lab / uvicorn and lab / granian per
app. On a shared machine use ``--rounds N`` and read the ratios, not the absolute figures.

    .venv/bin/python benchmarks/asgi_vs_peers.py                    # wrk -t1 -c50 -d10s, 1 round
    .venv/bin/python benchmarks/asgi_vs_peers.py --rounds 3 -d5
    .venv/bin/python benchmarks/asgi_vs_peers.py --apps raw --rounds 5 -d3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_vs_peers import SAME, Measurements, measure_all, print_table

from lab.errors import PinningError, WrkError
from lab.peers.pinning import server_and_load_cores
from lab.peers.wrk import WrkLoad, find_wrk

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


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    apps = ("raw", "starlette") if arguments.apps == "both" else (arguments.apps,)
    names = [name for app in apps for name in (SERVERS[app][0], *SERVERS[app][1])]
    try:
        find_wrk()
        load = WrkLoad(threads=arguments.threads, connections=arguments.connections,
                       duration_s=arguments.duration)
        measurements = measure_all(names, {SAME: load}, arguments.rounds, arguments)
    except (WrkError, PinningError, ValueError) as problem:
        print(f"asgi_vs_peers: {problem}", file=sys.stderr)
        return 2
    print(f"wrk -t{load.threads} -c{load.connections} -d{load.duration_s}s /fast; warm-up "
          f"{arguments.warmup} s; {arguments.rounds} interleaved round(s); servers on cores "
          f"{arguments.server_cores}, wrk on {arguments.wrk_cores}; {os.cpu_count()} cores here")
    print_table(measurements)
    by_name = {entry.name: entry for entry in measurements}
    report: dict[str, Any] = {}
    print()
    print("ratios of the median requests/s (higher is better for the lab):")
    for app in apps:
        lab_name, peers = SERVERS[app]
        lab_rate = rate(by_name[lab_name])
        report[app] = {"requests_per_s": {name: rate(by_name[name]) for name in (lab_name, *peers)}}
        for peer in peers:
            peer_rate = rate(by_name[peer])
            ratio = lab_rate / peer_rate if peer_rate else float("nan")
            report[app][f"lab / {peer}"] = ratio
            target = f" (target x{TARGETS[app]:.1f})" if peer.startswith("uvicorn") else ""
            print(f"  {app:<10} lab / {peer:<18} x{ratio:.2f}{target}")
    if arguments.json:
        print(json.dumps(report))
    return 0 if all(entry.results for entry in measurements) else 1


if __name__ == "__main__":
    sys.exit(main())

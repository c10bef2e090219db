"""The lab server against uvicorn (httptools) and nginx (one worker), measured by wrk in one run.

Each server runs alone, pinned to the server core; wrk runs pinned to the load core, with the
same load for every server. Absolute figures do not transfer between machines; the ratios
printed at the end (lab / uvicorn, lab / nginx) do. On a shared machine use
``--rounds N``: the servers are measured in N interleaved rounds and the ratios use medians.

Two kinds of requests, both measured by default (``--requests same|distinct|both``):
"same" is wrk's single request, the same bytes every time; "distinct" runs wrk with
benchmarks/distinct_requests.lua, which cycles through 100,000 requests that differ in one
header, so that no server can answer from a cache of bytes it saw before.

    .venv/bin/python benchmarks/server_vs_peers.py                     # wrk -t1 -c50 -d10s, both kinds
    .venv/bin/python benchmarks/server_vs_peers.py -t2 -c360 -d60      # the seed article's wrk run
    .venv/bin/python benchmarks/server_vs_peers.py --rounds 3 -d5                # medians of 3 rounds
    .venv/bin/python benchmarks/server_vs_peers.py --requests distinct --json
    .venv/bin/python benchmarks/server_vs_peers.py --peers lab,uvicorn,nginx,node,express
    .venv/bin/python benchmarks/server_vs_peers.py --lab-args="--workers 1"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import PeerError, PeerUnavailable, PinningError, WrkError
from lab.peers.pinning import server_and_load_cores
from lab.peers.servers import PEER_NAMES, start_peer
from lab.peers.wrk import WrkLoad, WrkResult, find_wrk, run_wrk

DEFAULT_PEERS = ("lab", "uvicorn", "nginx")
BASELINE = "lab"
WARMUP_S = 1  # lets node's JIT and every server's caches settle before the measured run
DISTINCT_SCRIPT = Path(__file__).resolve().parent / "distinct_requests.lua"


@dataclass(frozen=True)
class RequestMode:
    """Which requests wrk sends: its own single request, or those of a Lua script."""

    name: str
    script: Path | None
    description: str


SAME = RequestMode("same", None, "wrk's one request, the same bytes every time")
DISTINCT = RequestMode("distinct", DISTINCT_SCRIPT,
                       f"{DISTINCT_SCRIPT.name}: 100,000 requests that differ in one header")
REQUEST_CHOICES = {"same": (SAME,), "distinct": (DISTINCT,), "both": (SAME, DISTINCT)}


@dataclass
class Measurements:
    """Every round's result for one server under one kind of requests, or why there is none."""

    name: str
    mode: RequestMode
    results: list[WrkResult] = field(default_factory=list)
    missing: str | None = None

    def median(self, figure: Callable[[WrkResult], float]) -> float:
        return statistics.median(figure(result) for result in self.results)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    load = WrkLoad()  # the defaults live in WrkLoad, once
    server_cores, load_cores = server_and_load_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-t", "--threads", type=int, default=load.threads, help="wrk threads")
    parser.add_argument("-c", "--connections", type=int, default=load.connections, help="wrk connections")
    parser.add_argument("-d", "--duration", type=int, default=load.duration_s, help="seconds per server")
    parser.add_argument("--timeout", type=int, default=load.timeout_s,
                        help="wrk's response timeout in seconds (slower responses count as errors)")
    parser.add_argument("--warmup", type=int, default=WARMUP_S,
                        help="seconds of unmeasured load before each measurement (0: none)")
    parser.add_argument("--peers", type=_names, default=DEFAULT_PEERS,
                        help=f"comma-separated, from {','.join(PEER_NAMES)} "
                             f"(default: {','.join(DEFAULT_PEERS)})")
    parser.add_argument("--rounds", type=_at_least_one, default=1,
                        help="measure every server this many times, interleaved; report medians")
    parser.add_argument("--path", default="/fast", help="path every server is asked for")
    parser.add_argument("--requests", choices=REQUEST_CHOICES, default="both",
                        help="same: wrk's one request; distinct: 100,000 requests differing in "
                             "one header (benchmarks/distinct_requests.lua); both (default)")
    parser.add_argument("--server-cores", type=_cores, default=server_cores,
                        help="cores for the server under test, e.g. 0 or 0,2 ('none': unpinned)")
    parser.add_argument("--wrk-cores", type=_cores, default=load_cores,
                        help="cores for wrk, e.g. 1 ('none': unpinned)")
    parser.add_argument("--lab-args", type=shlex.split, default=[],
                        help="extra flags for python -m lab serve, e.g. --lab-args='--workers 1'")
    parser.add_argument("--json", action="store_true",
                        help="also print every result, median and ratio as one JSON object on one line")
    return parser.parse_args(argv)


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, got {text!r}")
    return int(text)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PEER_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown peer {unknown}; choose from {', '.join(PEER_NAMES)}")
    return names


def _cores(text: str) -> tuple[int, ...] | None:
    if text.lower() == "none":
        return None
    try:
        return tuple(int(core) for core in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"cores: comma-separated core numbers or 'none', got {text!r}") from error


def measure(name: str, load: WrkLoad, arguments: argparse.Namespace) -> WrkResult:
    """Start one server, warm it up, measure it, stop it.

    A fresh server for every measurement: nothing one kind of requests left behind (a warm
    cache, a grown buffer) carries over into the other's figures.
    """
    extra_args = arguments.lab_args if name == "lab" else []
    with start_peer(name, cores=arguments.server_cores, extra_args=extra_args) as peer:
        url = peer.url + arguments.path
        if arguments.warmup > 0:
            # The warm-up sends the same kind of requests as the measurement that follows.
            warmup = dataclasses.replace(load, duration_s=arguments.warmup, latency=False)
            run_wrk(url, warmup, cores=arguments.wrk_cores)
        return run_wrk(url, load, cores=arguments.wrk_cores)


def measure_all(names: Sequence[str], loads: Mapping[RequestMode, WrkLoad], rounds: int,
                arguments: argparse.Namespace) -> list[Measurements]:
    """Interleaved rounds over every (kind of requests, server), the order rotated each round,
    so that a slow spell of a shared machine falls on every server and both kinds of requests
    rather than on whichever ran at that moment."""
    entries = [Measurements(name, mode) for mode in loads for name in names]
    for round_number in range(rounds):
        shift = round_number % len(entries)
        for entry in [*entries[shift:], *entries[:shift]]:
            if entry.missing:
                continue
            try:
                entry.results.append(measure(entry.name, loads[entry.mode], arguments))
            except PeerUnavailable as unavailable:
                entry.missing = f"not available: {unavailable}"
            except (PeerError, WrkError) as failure:
                entry.missing = f"failed: {failure}"
    return entries


def _ms(value: float) -> str:
    return f"{value:.3f}"


def print_table(measurements: Sequence[Measurements]) -> None:
    header = (f"{'server':<14} {'requests/s':>12} {'avg ms':>9} {'p50 ms':>9} {'p99 ms':>9} "
              f"{'max ms':>9} {'errors':>8}")
    print(header)
    print("-" * len(header))
    for entry in measurements:
        if entry.missing:
            print(f"{entry.name:<14} {entry.missing}")
        for round_number, result in enumerate(entry.results, start=1):
            label = entry.name if len(entry.results) == 1 else f"{entry.name} #{round_number}"
            print(f"{label:<14} {result.requests_per_s:>12,.0f} {_ms(result.latency_avg_ms):>9} "
                  f"{_ms(result.percentile_ms(50)):>9} {_ms(result.percentile_ms(99)):>9} "
                  f"{_ms(result.latency_max_ms):>9} {result.errors_total:>8}")
        if len(entry.results) > 1:
            print(f"{entry.name + ' median':<14} {entry.median(_requests_per_s):>12,.0f} {'':>9} "
                  f"{_ms(entry.median(_p50_ms)):>9} {_ms(entry.median(_p99_ms)):>9}")


def _requests_per_s(result: WrkResult) -> float:
    return result.requests_per_s


def _p50_ms(result: WrkResult) -> float:
    return result.percentile_ms(50)


def _p99_ms(result: WrkResult) -> float:
    return result.percentile_ms(99)


@dataclass(frozen=True)
class Ratios:
    """The baseline's medians over a peer's (nan where the peer's figure is zero)."""

    requests_per_s: float
    p50: float
    p99: float


def ratios(baseline: Measurements | None, peer: Measurements) -> Ratios | None:
    """Ratios of the medians (of the single result when there is one round); None when one
    side has no measurement. The one place these figures are computed, for text and JSON."""
    if baseline is None or not baseline.results or not peer.results:
        return None
    # p50 alongside p99: on a shared machine the tail swings with the neighbours' load,
    # the median much less, so the two together say whether a gap is the server's own.
    return Ratios(*(_ratio(baseline.median(figure), peer.median(figure))
                    for figure in (_requests_per_s, _p50_ms, _p99_ms)))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def peer_ratios(measurements: Sequence[Measurements]) -> list[tuple[Measurements, Ratios | None]]:
    """Every peer with its ratios against the baseline measured under the same requests."""
    baselines = {entry.mode.name: entry for entry in measurements if entry.name == BASELINE}
    return [(entry, ratios(baselines.get(entry.mode.name), entry))
            for entry in measurements if entry.name != BASELINE]


def print_ratios(measurements: Sequence[Measurements], rounds: int) -> None:
    print()
    print("ratios of the medians" + (f" of {rounds} interleaved rounds" if rounds > 1 else "") + ":")
    for entry, figures in peer_ratios(measurements):
        label = f"{entry.mode.name:<9} {BASELINE} / {entry.name}:"
        if figures is None:
            print(f"{label:<27} n/a (one side has no measurement)")
            continue
        print(f"{label:<27} requests/s x{figures.requests_per_s:.2f} (higher is better); "
              f"p50 x{figures.p50:.2f}, p99 x{figures.p99:.2f} (lower is better)")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    modes = REQUEST_CHOICES[arguments.requests]
    try:
        find_wrk()
        load = WrkLoad(threads=arguments.threads, connections=arguments.connections,
                       duration_s=arguments.duration, timeout_s=arguments.timeout)
        # Built before any run, so that a missing script stops the benchmark at once.
        loads = {mode: dataclasses.replace(load, script=mode.script) for mode in modes}
    except (WrkError, ValueError) as problem:
        print(f"server_vs_peers: {problem}", file=sys.stderr)
        return 2
    print(f"wrk -t{load.threads} -c{load.connections} -d{load.duration_s}s --timeout {load.timeout_s}s "
          f"--latency {arguments.path}; warm-up {arguments.warmup} s; servers on cores "
          f"{_describe(arguments.server_cores)}, wrk on {_describe(arguments.wrk_cores)}; "
          f"{os.cpu_count()} cores here")
    if arguments.lab_args:
        print(f"lab server flags: {shlex.join(arguments.lab_args)}")
    try:
        measurements = measure_all(arguments.peers, loads, arguments.rounds, arguments)
    except PinningError as problem:
        print(f"server_vs_peers: {problem}", file=sys.stderr)
        return 2
    for mode in modes:
        print()
        print(f"{mode.name} requests ({mode.description})")
        print_table([entry for entry in measurements if entry.mode == mode])
    if BASELINE in arguments.peers:
        print_ratios(measurements, arguments.rounds)
    if arguments.json:
        print(json.dumps(json_report(measurements, modes, load, arguments)))
    return 0 if all(entry.results for entry in measurements) else 1


def json_report(measurements: Sequence[Measurements], modes: Sequence[RequestMode], load: WrkLoad,
                arguments: argparse.Namespace) -> dict[str, Any]:
    """One object: the settings, then per kind of requests every server's runs and medians
    (or why it has none) and the ratios against the baseline."""
    figures = {mode.name: peer_ratios([entry for entry in measurements if entry.mode == mode])
               for mode in modes}
    return {
        "wrk": {"threads": load.threads, "connections": load.connections, "duration_s": load.duration_s,
                "timeout_s": load.timeout_s, "warmup_s": arguments.warmup, "path": arguments.path,
                "rounds": arguments.rounds, "server_cores": arguments.server_cores,
                "wrk_cores": arguments.wrk_cores, "lab_args": arguments.lab_args},
        "requests": {
            mode.name: {
                "script": str(mode.script) if mode.script else None,
                "description": mode.description,
                "servers": {entry.name: _json_server(entry)
                            for entry in measurements if entry.mode == mode},
                "ratios": {f"{BASELINE} / {entry.name}": _json_ratios(peer_figures)
                           for entry, peer_figures in figures[mode.name]},
            }
            for mode in modes
        },
    }


def _json_server(entry: Measurements) -> dict[str, Any]:
    if not entry.results:
        return {"missing": entry.missing}
    runs = [{key: value for key, value in asdict(result).items() if key != "output"}
            for result in entry.results]
    medians = {"requests_per_s": entry.median(_requests_per_s),
               "p50_ms": entry.median(_p50_ms), "p99_ms": entry.median(_p99_ms)}
    return {"runs": runs, "median": medians, "missing": entry.missing}


def _json_ratios(figures: Ratios | None) -> dict[str, float | None] | None:
    """nan (a zero denominator) becomes null: JSON has no nan."""
    if figures is None:
        return None
    return {key: None if math.isnan(value) else value for key, value in asdict(figures).items()}


def _describe(cores: tuple[int, ...] | None) -> str:
    return "any (unpinned)" if cores is None else ",".join(map(str, cores))


if __name__ == "__main__":
    sys.exit(main())

"""The lab server against uvicorn (httptools) and nginx (one worker), measured by wrk in one run.

Each server runs alone, pinned to the server core; wrk runs pinned to the load core, with the
same load for every server. Absolute figures do not transfer between machines; the ratios
printed at the end (lab / uvicorn, lab / nginx) do. On a shared machine use
``--rounds N``: the servers are measured in N interleaved rounds and the ratios use medians.

    .venv/bin/python benchmarks/server_vs_peers.py                     # wrk -t1 -c50 -d10s
    .venv/bin/python benchmarks/server_vs_peers.py -t2 -c360 -d60      # the seed article's wrk run
    .venv/bin/python benchmarks/server_vs_peers.py --rounds 3 -d5                # medians of 3 rounds
    .venv/bin/python benchmarks/server_vs_peers.py --peers lab,uvicorn,nginx,node,express
    .venv/bin/python benchmarks/server_vs_peers.py --lab-args="--no-repeat-cache"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from lab.peers.pinning import PinningError, server_and_load_cores
from lab.peers.servers import PEER_NAMES, PeerError, PeerUnavailable, start_peer
from lab.peers.wrk import WrkError, WrkLoad, WrkResult, find_wrk, run_wrk

DEFAULT_PEERS = ("lab", "uvicorn", "nginx")
BASELINE = "lab"
WARMUP_S = 1  # lets node's JIT and every server's caches settle before the measured run


@dataclass
class Measurements:
    """Every round's result for one server, or why there is none."""

    name: str
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
    parser.add_argument("--server-cores", type=_cores, default=server_cores,
                        help="cores for the server under test, e.g. 0 or 0,2 ('none': unpinned)")
    parser.add_argument("--wrk-cores", type=_cores, default=load_cores,
                        help="cores for wrk, e.g. 1 ('none': unpinned)")
    parser.add_argument("--lab-args", type=shlex.split, default=[],
                        help="extra flags for python -m lab serve, e.g. --lab-args='--workers 1'")
    parser.add_argument("--json", action="store_true", help="also print every result as one JSON line")
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
    """Start one server, warm it up, measure it, stop it."""
    extra_args = arguments.lab_args if name == "lab" else []
    with start_peer(name, cores=arguments.server_cores, extra_args=extra_args) as peer:
        url = peer.url + arguments.path
        if arguments.warmup > 0:
            warmup = WrkLoad(threads=load.threads, connections=load.connections,
                             duration_s=arguments.warmup, latency=False)
            run_wrk(url, warmup, cores=arguments.wrk_cores)
        return run_wrk(url, load, cores=arguments.wrk_cores)


def measure_all(names: Sequence[str], rounds: int, load: WrkLoad,
                arguments: argparse.Namespace) -> list[Measurements]:
    """Interleaved rounds, the order rotated each round, so that a slow spell of a shared
    machine falls on every server rather than on whichever ran at that moment."""
    measurements = {name: Measurements(name) for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in [*names[shift:], *names[:shift]]:
            entry = measurements[name]
            if entry.missing:
                continue
            try:
                entry.results.append(measure(name, load, arguments))
            except PeerUnavailable as unavailable:
                entry.missing = f"not available: {unavailable}"
            except (PeerError, WrkError) as failure:
                entry.missing = f"failed: {failure}"
    return list(measurements.values())


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


def print_ratios(measurements: Sequence[Measurements]) -> None:
    """Ratios of the medians (of the single result when there is one round)."""
    by_name = {entry.name: entry for entry in measurements if entry.results}
    baseline = by_name.get(BASELINE)
    print()
    for entry in measurements:
        if entry.name == BASELINE:
            continue
        label = f"{BASELINE} / {entry.name}:"
        if baseline is None or entry.name not in by_name:
            print(f"{label:<18} n/a (one side has no measurement)")
            continue
        throughput = _ratio(baseline.median(_requests_per_s), entry.median(_requests_per_s))
        # p50 alongside p99: on a shared machine the tail swings with the neighbours' load,
        # the median much less, so the two together say whether a gap is the server's own.
        median = _ratio(baseline.median(_p50_ms), entry.median(_p50_ms))
        tail = _ratio(baseline.median(_p99_ms), entry.median(_p99_ms))
        print(f"{label:<18} requests/s x{throughput} (higher is better); "
              f"p50 x{median}, p99 x{tail} (lower is better)")


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator > 0 else "n/a"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        find_wrk()
        load = WrkLoad(threads=arguments.threads, connections=arguments.connections,
                       duration_s=arguments.duration, timeout_s=arguments.timeout)
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
        measurements = measure_all(arguments.peers, arguments.rounds, load, arguments)
    except PinningError as problem:
        print(f"server_vs_peers: {problem}", file=sys.stderr)
        return 2
    print()
    print_table(measurements)
    if BASELINE in arguments.peers:
        print_ratios(measurements)
    if arguments.json:
        print_json(measurements)
    return 0 if all(entry.results for entry in measurements) else 1


def print_json(measurements: Sequence[Measurements]) -> None:
    """One line per measured run (machine-readable), one per server that could not run."""
    for entry in measurements:
        if entry.missing:
            print(json.dumps({"server": entry.name, "missing": entry.missing}))
        for round_number, result in enumerate(entry.results, start=1):
            fields = asdict(result)
            fields.pop("output")
            print(json.dumps({"server": entry.name, "round": round_number, **fields}))


def _describe(cores: tuple[int, ...] | None) -> str:
    return "any (unpinned)" if cores is None else ",".join(map(str, cores))


if __name__ == "__main__":
    sys.exit(main())

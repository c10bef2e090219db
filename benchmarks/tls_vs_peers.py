"""The lab server over TLS against nginx and uvicorn: keep-alive requests/s and handshakes/s.

Every server has the same certificate (the lab's, ECDSA P-256: lab.tls.server_certificate())
and runs alone, pinned to the server core; wrk (it speaks https) runs pinned to the load core.
Three measurements, each in interleaved rounds (the order rotated every round, so that a slow
spell of a shared machine falls on every server), reported as medians and ratios:

- keep-alive: ``wrk -c50`` on open TLS connections: the record layer's cost per request;
- handshakes, resumed: ``wrk -H 'Connection: close'``, a new connection per request. wrk keeps
  its last session and offers it again on reconnecting, so with resumption on (each server's
  default: tickets, nginx's session cache) most of these are abbreviated handshakes;
- handshakes, full: the same with resumption off on the server (the lab's
  ``--no-tls-session-tickets``, nginx's ``ssl_session_cache off; ssl_session_tickets off``):
  every one signs with the server's key, OpenSSL's work in both servers.

    .venv/bin/python benchmarks/tls_vs_peers.py                 # -d 5, 3 rounds
    .venv/bin/python benchmarks/tls_vs_peers.py -d 10 --rounds 5 --json

Beside requests/s, each server's CPU time per request (µs, from /proc/PID/stat over the
measured run): on a shared machine the rate swings with the neighbours' load, the CPU a
request costs the server much less; it is the figure to trust when the two disagree.

The issue's goals, printed with the ratios: the lab at least 2x uvicorn on keep-alive HTTPS,
and at least 0.7x nginx on (full) handshakes per second.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import PeerError, PeerUnavailable, PinningError, WrkError
from lab.peers.pinning import server_and_load_cores
from lab.peers.servers import start_peer
from lab.peers.wrk import WrkLoad, WrkResult, find_wrk, run_wrk

CLOSE = ("Connection: close",)


@dataclass(frozen=True)
class Server:
    """One server as measured: a peer and the flags it is started with."""

    label: str
    peer: str
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    headers: tuple[str, ...]
    servers: tuple[Server, ...]


LAB = Server("lab", "lab-tls")
NGINX = Server("nginx", "nginx-tls")
UVICORN = Server("uvicorn", "uvicorn-tls")
SCENARIOS = (
    Scenario("keep-alive", "requests/s on open TLS connections", (), (LAB, NGINX, UVICORN)),
    Scenario("resumed", "new connection per request (Connection: close), resumption on",
             CLOSE, (LAB, NGINX, UVICORN)),
    Scenario("full", "new connection per request, resumption off: a full handshake each",
             CLOSE, (Server("lab", "lab-tls", ("--no-tls-session-tickets",)),
                     Server("nginx", "nginx-tls-nocache"))),
)
# (scenario, numerator, denominator, goal): the ratios the closing note gives
GOALS = (("keep-alive", "lab", "uvicorn", 2.0), ("keep-alive", "lab", "nginx", None),
         ("full", "lab", "nginx", 0.7), ("resumed", "lab", "nginx", None),
         ("resumed", "lab", "uvicorn", None))


@dataclass
class Measurements:
    scenario: Scenario
    server: Server
    results: list[WrkResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # server CPU per request, each round
    missing: str | None = None

    def median_rate(self) -> float:
        return statistics.median(result.requests_per_s for result in self.results)

    def median_cpu_us(self) -> float:
        return statistics.median(self.cpu_us)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    server_cores, load_cores = server_and_load_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("-d", "--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load first (0: none)")
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                        help="comma-separated, from " + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--json", action="store_true", help="also print everything as one JSON line")
    arguments = parser.parse_args(argv)
    arguments.server_cores, arguments.wrk_cores = server_cores, load_cores
    known = {scenario.name: scenario for scenario in SCENARIOS}
    chosen = [name.strip() for name in arguments.scenarios.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen or arguments.rounds < 1 or arguments.duration < 1:
        parser.error(f"--scenarios: choose from {', '.join(known)}; --rounds and -d at least 1")
    arguments.chosen = [known[name] for name in chosen]
    return arguments


def measure(entry: Measurements, arguments: argparse.Namespace) -> tuple[WrkResult, float]:
    """One run: wrk's result and the server's CPU µs per request over it."""
    load = WrkLoad(connections=arguments.connections, duration_s=arguments.duration,
                   headers=entry.scenario.headers)
    with start_peer(entry.server.peer, cores=arguments.server_cores,
                    extra_args=entry.server.extra_args) as peer:
        if arguments.warmup > 0:
            run_wrk(peer.fast_url, dataclasses.replace(load, duration_s=arguments.warmup, latency=False),
                    cores=arguments.wrk_cores)
        before = cpu_seconds(peer.pid)
        result = run_wrk(peer.fast_url, load, cores=arguments.wrk_cores)
        used = cpu_seconds(peer.pid) - before
    return result, used * 1e6 / max(1, result.requests)


def measure_all(arguments: argparse.Namespace) -> list[Measurements]:
    entries = [Measurements(scenario, server) for scenario in arguments.chosen for server in scenario.servers]
    for round_number in range(arguments.rounds):
        shift = round_number % len(entries)
        for entry in [*entries[shift:], *entries[:shift]]:
            if entry.missing:
                continue
            try:
                result, cpu_us = measure(entry, arguments)
                entry.results.append(result)
                entry.cpu_us.append(cpu_us)
            except PeerUnavailable as unavailable:
                entry.missing = f"not available: {unavailable}"
            except (PeerError, WrkError) as failure:
                entry.missing = f"failed: {failure}"
    return entries


def ratio_of(entries: Sequence[Measurements], scenario: str, numerator: str, denominator: str,
             *, cpu: bool = False) -> float:
    """numerator / denominator of the median requests/s; with ``cpu``, of the requests per
    CPU second (the inverse of the CPU per request), so that higher is better in both."""
    found = {(e.scenario.name, e.server.label): e for e in entries if e.results}
    top, bottom = found.get((scenario, numerator)), found.get((scenario, denominator))
    if top is None or bottom is None:
        return math.nan
    if cpu:
        return bottom.median_cpu_us() / top.median_cpu_us() if top.median_cpu_us() > 0 else math.nan
    return top.median_rate() / bottom.median_rate() if bottom.median_rate() > 0 else math.nan


def print_report(entries: Sequence[Measurements], arguments: argparse.Namespace) -> None:
    for scenario in arguments.chosen:
        print()
        print(f"{scenario.name}: {scenario.description}")
        print(f"{'server':<10} {'median/s':>10} {'CPU µs/req':>11}   rounds (requests/s; errors)")
        for entry in (e for e in entries if e.scenario == scenario):
            if not entry.results:
                print(f"{entry.server.label:<10} {entry.missing}")
                continue
            rounds = ", ".join(f"{r.requests_per_s:,.0f}" + (f" ({r.errors_total} err)" if r.errors_total
                                                             else "") for r in entry.results)
            print(f"{entry.server.label:<10} {entry.median_rate():>10,.0f} {entry.median_cpu_us():>11.1f}"
                  f"   {rounds}")
    print()
    print(f"ratios of the medians of {arguments.rounds} interleaved rounds:")
    for scenario, numerator, denominator, goal in GOALS:
        if scenario not in {s.name for s in arguments.chosen}:
            continue
        value = ratio_of(entries, scenario, numerator, denominator)
        per_cpu = ratio_of(entries, scenario, numerator, denominator, cpu=True)
        verdict = "" if goal is None or math.isnan(value) else (
            f"  (goal >= {goal:g}x: {'met' if value >= goal else 'NOT met'})")
        print(f"  {scenario:<11} {numerator} / {denominator}: x{value:.2f} requests/s, "
              f"x{per_cpu:.2f} requests per CPU second{verdict}")


def json_report(entries: Sequence[Measurements], arguments: argparse.Namespace) -> dict[str, Any]:
    return {
        "settings": {"connections": arguments.connections, "duration_s": arguments.duration,
                     "rounds": arguments.rounds, "server_cores": arguments.server_cores,
                     "wrk_cores": arguments.wrk_cores},
        "servers": [{"scenario": e.scenario.name, "server": e.server.label, "peer": e.server.peer,
                     "flags": list(e.server.extra_args), "missing": e.missing,
                     "requests_per_s": [r.requests_per_s for r in e.results],
                     "cpu_us_per_request": e.cpu_us,
                     "median": e.median_rate() if e.results else None,
                     "median_cpu_us": e.median_cpu_us() if e.results else None} for e in entries],
        "ratios": {f"{scenario} {top} / {bottom}{suffix}": (None if math.isnan(value) else value)
                   for scenario, top, bottom, _ in GOALS
                   for suffix, cpu in (("", False), (" per CPU", True))
                   for value in [ratio_of(entries, scenario, top, bottom, cpu=cpu)]},
    }


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        find_wrk()
    except WrkError as problem:
        print(f"tls_vs_peers: {problem}", file=sys.stderr)
        return 2
    print(f"wrk -t1 -c{arguments.connections} -d{arguments.duration}s over https, warm-up "
          f"{arguments.warmup} s; servers on cores {arguments.server_cores}, wrk on "
          f"{arguments.wrk_cores}; {os.cpu_count()} cores here; certificate ECDSA P-256 (the lab's)")
    try:
        entries = measure_all(arguments)
    except PinningError as problem:
        print(f"tls_vs_peers: {problem}", file=sys.stderr)
        return 2
    print_report(entries, arguments)
    if arguments.json:
        print(json.dumps(json_report(entries, arguments)))
    return 0 if all(entry.results for entry in entries) else 1


if __name__ == "__main__":
    sys.exit(main())

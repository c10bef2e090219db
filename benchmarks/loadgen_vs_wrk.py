"""The lab's load generator against wrk, same server, same connections, in one run.

    .venv/bin/python benchmarks/loadgen_vs_wrk.py [--servers nginx lab] [--duration 5] [--rounds 3]

The server under test is pinned to core 0 (nginx with one worker, or the lab server with one
worker); wrk and the lab's generator are each pinned to core 1 and take turns, round after
round, so that a noisy neighbour hurts both alike. Per server it prints requests/s at 50
connections and p50 latency at 1 connection for both tools (median over rounds), and the
ratios the issue sets targets for: generator/wrk requests/s >= 0.9 and p50 <= 1.25x wrk's.

wrk runs with one thread (-t1): it has one core, and a second thread would only share it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_CORE = "0"
CLIENT_CORE = "1"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

NGINX_CONFIG = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  keepalive_requests 1000000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "OK"; }}
  }}
}}
"""


@dataclass(frozen=True)
class Measurement:
    rps: float
    p50_ms: float


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def wait_for_port(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def nginx_server() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="lab-nginx-") as root:
        port = free_port()
        config = Path(root) / "nginx.conf"
        config.write_text(NGINX_CONFIG.format(root=root, port=port))
        process = subprocess.Popen(["taskset", "-c", SERVER_CORE, NGINX, "-p", root, "-c", str(config)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            yield f"http://127.0.0.1:{port}/"
        finally:
            process.terminate()
            process.wait(10)


@contextlib.contextmanager
def lab_server() -> Iterator[str]:
    process = subprocess.Popen(["taskset", "-c", SERVER_CORE, sys.executable, "-m", "lab", "serve",
                                "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]  # "listening on http://127.0.0.1:PORT"
        yield url + "/fast"
    finally:
        process.terminate()
        process.wait(10)


SERVERS = {"nginx": nginx_server, "lab": lab_server}

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, connections: int, duration: float) -> Measurement:
    output = subprocess.run(
        ["taskset", "-c", CLIENT_CORE, WRK, "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
        capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)\b", output).groups()  # type: ignore[union-attr]
    return Measurement(rps=rps, p50_ms=float(value) * _UNITS_MS[unit])


def run_generator(url: str, connections: int, duration: float) -> Measurement:
    output = subprocess.run(
        ["taskset", "-c", CLIENT_CORE, sys.executable, "-m", "lab", "bench", url,
         "--connections", str(connections), "--duration", f"{duration:g}", "--json"],
        capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    report = json.loads(output)
    if report["errors"]:
        print(f"    (generator saw errors: {report['errors']})")
    return Measurement(rps=report["rps"], p50_ms=report["latency_ms"]["p50"])


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def compare(server_name: str, url: str, duration: float, rounds: int) -> dict[str, float]:
    figures: dict[str, list[float]] = {key: [] for key in (
        "wrk_rps_50", "lab_rps_50", "wrk_p50_1", "lab_p50_1")}
    for round_number in range(1, rounds + 1):
        # Alternate which tool goes first, so neither always meets a warmer server.
        order = [("wrk", run_wrk), ("lab", run_generator)]
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
    parser.add_argument("--servers", nargs="+", choices=sorted(SERVERS), default=["nginx", "lab"])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("needs two cores: one for the server, one for the generators", file=sys.stderr)
        return 2
    summary = {}
    for name in arguments.servers:
        print(f"== {name} on core {SERVER_CORE}, clients on core {CLIENT_CORE}, "
              f"{arguments.duration:g} s per measurement, {arguments.rounds} rounds")
        with SERVERS[name]() as url:
            summary[name] = compare(name, url, arguments.duration, arguments.rounds)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Small helpers the teaching notebooks share: the compact
table of figures a reader needs (requests/s, p50/p90/p99/p99.9, max), the rows and the
figure of a load sweep (latency against offered load), and those of a closed loop with think
time (latency against the number of users).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lab.engine.result import LoadResult
from lab.errors import ConfigError, LabError
from lab.loadgen import LoadSpec, start_load
from lab.measure import figures as catalogue
from lab.measure.queueing import busy_fraction, interactive_response_ms, kingman_wait_ms, littles_law
from lab.measure.samples import MISSING
from lab.measure.stats import LatencySummary
from lab.records.record import Record

# The compact table a reader needs: the mean, the percentiles a chapter talks about, the max.
COMPACT_FIGURES = (catalogue.MEAN, *(catalogue.percentile(key) for key in ("p50", "p90", "p99", "p99_9")),
                   catalogue.MAX)


def figures(records: Sequence[Record], *, uncorrected: bool = True) -> pd.DataFrame:
    """One row per record: requests/s, errors, and the latency percentiles in milliseconds
    (``too few`` where fewer than five requests lie beyond a percentile).

    Latency is corrected for coordinated omission where the run has intended send times (the
    open loop). With ``uncorrected``, each open-loop record gets a second row measured from
    the actual send: the figure a tool without the correction would print.
    """
    rows = []
    for record in records:
        summary = record.summary
        rows.append(_row(record.name, summary.rps, summary.error_total, summary.latency))
        if uncorrected and summary.uncorrected is not None:
            rows.append(_row(f"{record.name}, uncorrected", summary.rps,
                             summary.error_total, summary.uncorrected))
    return pd.DataFrame(rows).set_index("run")


def _row(name: str, requests_per_s: float, errors: int, latency: LatencySummary) -> dict[str, Any]:
    row: dict[str, Any] = {"run": name, "requests/s": round(requests_per_s), "errors": errors}
    for figure in COMPACT_FIGURES:
        # a percentile too few requests lie beyond reads catalogue.UNSUPPORTED, not the max
        value = figure.shown(latency)
        row[figure.heading] = value if isinstance(value, str) else round(value, 3)
    return row


# --- which side saturated: the server's and the generator's CPU during a run ----------------

def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU seconds the processes have used so far; None once one has exited.

    One small read of /proc/PID/stat per process (fields 14 and 15, in clock ticks).
    """
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": the name may hold spaces
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from the first line of /proc/stat.

    Busy includes interrupt and softirq time, where loopback TCP does much of its work: that
    time is charged to no process, so the processes' own figures leave it out.
    """
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle and iowait
    total = sum(fields)
    ticks = os.sysconf("SC_CLK_TCK")
    return (total - idle) / ticks, total / ticks


@dataclass(frozen=True)
class CpuShares:
    """How busy each side was while a run lasted, in cores (1.0 = one core all the time)."""

    server: float  # charged to the server's processes
    generator: float  # charged to the generator's worker processes
    machine: float  # all cores, whoever used them (softirq included)
    generator_workers: int
    cores: int

    def saturated(self) -> str:
        """Which side was the limit, in words."""
        if self.server >= 0.85:
            return f"the server: its one core was {self.server:.0%} busy"
        if self.generator >= 0.85 * self.generator_workers:
            return (f"the generator: its {self.generator_workers} worker(s) used "
                    f"{self.generator:.2f} cores")
        if self.machine >= 0.9 * self.cores:
            return (f"the machine: its {self.cores} cores were {self.machine / self.cores:.0%} busy "
                    f"(server {self.server:.2f}, generator {self.generator:.2f}, the rest the "
                    "kernel's network work and other processes), so each side waited for a core")
        return (f"neither side (server {self.server:.2f}, generator {self.generator:.2f} cores, "
                f"machine {self.machine:.2f} of {self.cores}): something else, e.g. latency, "
                "set the pace")


async def load_with_cpu(spec: LoadSpec, server_pids: Sequence[int], *,
                        interval_seconds: float = 0.2) -> tuple[LoadResult, CpuShares]:
    """Run a load and measure, while it runs, the CPU of the server's and the generator's
    processes: the two readings furthest apart at which every process was still there."""
    run = start_load(spec)
    readings: list[tuple[float, float, float, float, float]] = []

    def look(_: object) -> None:
        server, generator = cpu_seconds(server_pids), cpu_seconds(run.pids)
        if server is not None and generator is not None:
            readings.append((time.monotonic(), server, generator, *machine_busy_seconds()))

    result = await run.wait(interval=interval_seconds, on_progress=look)
    if len(readings) < 2:
        raise LabError("the run was too short to see how busy each side was; make it longer")
    first, last = readings[0], readings[-1]
    span = last[0] - first[0]
    cores = os.cpu_count() or 1
    machine = (last[3] - first[3]) / (last[4] - first[4]) * cores  # busy share of all cores
    shares = CpuShares((last[1] - first[1]) / span, (last[2] - first[2]) / span, machine,
                       spec.workers, cores)
    return result, shares


# --- load sweeps (latency against offered load) ----------------------------------------------

def load_point(result: LoadResult, *, capacity: float) -> dict[str, float]:
    """One open-loop run of a load sweep as a row: offered load, what was delivered, latency
    percentiles (corrected), the share of time the server was busy (the load it really had),
    and Little's law over the measured window."""
    if result.target_rate is None:
        raise ConfigError("result", "a load sweep needs open-loop runs (they have a target rate)")
    law = littles_law(result.samples, result.warmup_end_ns, result.end_ns)
    busy = busy_fraction(result.samples, result.warmup_end_ns, result.end_ns)
    latency = result.latency
    return {
        "offered load": result.target_rate / capacity,
        "offered req/s": result.target_rate,
        "throughput req/s": law.throughput_per_s,
        "utilisation": law.throughput_per_s / capacity,
        "busy (measured ρ)": busy,
        # the mean service time the server really gave: busy time per request answered
        "service ms (measured)": busy / law.throughput_per_s * 1000 if law.throughput_per_s else 0.0,
        "mean ms": latency.mean, "p50 ms": latency.p50, "p90 ms": latency.p90,
        "p99 ms": latency.p99, "max ms": latency.max,
        "arrival cv² (measured)": _arrival_cv2(result),
        "in flight (counted)": law.measured_in_flight,
        "in flight (λW)": law.predicted_in_flight,
        "late": float(result.late or 0),
    }


def _arrival_cv2(result: LoadResult) -> float:
    """How regular the arrivals at the server really were: the squared coefficient of
    variation of the gaps between actual sends (0: a metronome; 1: Poisson). A constant-rate
    generator aims at 0; a busy machine delays and bunches its sends."""
    sent = np.sort(result.samples["sent_ns"][result.samples["sent_ns"] != MISSING])
    sent = sent[(sent >= result.warmup_end_ns) & (sent < result.end_ns)]
    gaps = np.diff(sent).astype(np.float64)
    if gaps.size < 2 or gaps.mean() == 0:
        return float("nan")
    return float(gaps.var() / gaps.mean() ** 2)


def load_latency_figure(sweep: pd.DataFrame, *, service_ms: float) -> Figure:
    """The hockey stick: latency percentiles against offered load (top, log scale), with
    Kingman's approximation of the mean for regular arrivals and exponential service; and
    throughput against offered load (bottom), which flattens at capacity."""
    figure = Figure(figsize=(9.0, 7.0), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    load = sweep["offered load"]
    for column, style in (("p50 ms", "o-"), ("p90 ms", "s-"), ("p99 ms", "^-"), ("mean ms", "x:")):
        top.plot(load, sweep[column], style, label=column.replace(" ms", ""))
    curve = np.linspace(0, 0.98, 200)
    predicted = [service_ms + kingman_wait_ms(rho, service_ms, arrival_cv2=0, service_cv2=1)
                 for rho in curve]
    top.plot(curve, predicted, "--", color="grey", label="mean by Kingman's formula")
    top.axvline(1.0, color="red", linestyle=":", linewidth=1)
    top.set_yscale("log")
    top.set_ylabel("latency (ms, log scale)")
    top.set_title("Latency against offered load (open loop, corrected)")
    top.legend(fontsize="small")
    bottom.plot(load, sweep["utilisation"], "o-", label="delivered (throughput ÷ capacity)")
    bottom.plot(load, load, "--", color="grey", label="offered")
    bottom.axvline(1.0, color="red", linestyle=":", linewidth=1)
    bottom.set_xlabel("offered load (fraction of the capacity measured by the closed loop)")
    bottom.set_ylabel("fraction of capacity")
    bottom.legend(fontsize="small")
    return figure


def think_time_point(result: LoadResult, *, service_ms: float) -> dict[str, float]:
    """One closed-loop run with think time as a row: users, throughput, latency, the cycle a
    user goes round (N / X, from the throughput alone) against response plus think time (from
    the latencies), and mean value analysis' prediction of the response time."""
    spec = result.spec
    if spec.mode != "closed" or not spec.think_ms:
        raise ConfigError("result", "needs a closed-loop run with think time (think_ms > 0)")
    if not result.latency.count:
        raise LabError(f"the run with {spec.connections} users had no successful answer "
                       f"(errors: {dict(result.errors) or 'none'}): is the server still running?")
    users, think_ms = spec.connections, spec.think_ms
    return {
        "users": users,
        "requests": result.requests,
        "throughput req/s": result.rps,
        "mean ms": result.latency.mean,
        "p99 ms": result.latency.p99,
        "cycle N/X ms": users / result.rps * 1000 if result.rps else float("nan"),
        "R + Z ms": result.latency.mean + think_ms,
        "MVA mean ms": interactive_response_ms(users, service_ms, think_ms),
    }


def think_time_figure(runs: pd.DataFrame, *, service_ms: float, think_ms: float) -> Figure:
    """The knee seen from the user count: mean response time against users (top), with mean
    value analysis' curve and its two asymptotes (S, and N·S − Z); throughput against users
    (bottom), which flattens at the capacity 1/S."""
    figure = Figure(figsize=(9.0, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    users = runs["users"]
    curve = np.arange(1, int(users.max() * 1.1) + 1)
    knee = (service_ms + think_ms) / service_ms
    top.plot(users, runs["mean ms"], "o", label="measured mean")
    top.plot(curve, [interactive_response_ms(int(n), service_ms, think_ms) for n in curve], "-",
             color="grey", label="mean value analysis")
    top.plot(curve, np.full(len(curve), service_ms), ":", color="black", label="S (nobody waits)")
    top.plot(curve, np.maximum(curve * service_ms - think_ms, service_ms), "--", color="black",
             label="N·S − Z (the server always busy)")
    top.axvline(knee, color="red", linestyle=":", linewidth=1, label=f"knee N* = (S + Z) / S ≈ {knee:.0f}")
    top.set_ylabel("mean response time (ms)")
    top.set_title(f"Closed loop with think time Z = {think_ms:g} ms (exponential), "
                  f"service S ≈ {service_ms:.2f} ms")
    top.legend(fontsize="small")
    bottom.plot(users, runs["throughput req/s"], "o-", label="measured throughput")
    bottom.axhline(1000 / service_ms, color="grey", linestyle="--", label="capacity 1/S")
    bottom.plot(curve, curve / (service_ms + think_ms) * 1000, ":", color="black", label="N / (S + Z)")
    bottom.set_ylim(0, 1.3 * 1000 / service_ms)
    bottom.axvline(knee, color="red", linestyle=":", linewidth=1)
    bottom.set_xlabel("users (connections, each thinking between requests)")
    bottom.set_ylabel("requests/s")
    bottom.legend(fontsize="small")
    return figure

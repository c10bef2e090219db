"""The text summary of a load run, laid out the way wrk (and wrk2, for the open loop) print.

It prints the run's one :class:`~lab.measure.summary.RunSummary`, never a figure of its own.
Latencies are all in milliseconds (one unit per view: a column that switches between us, ms
and s hides a factor of a thousand from a quick reader).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lab.engine.result import LoadResult
from lab.measure import figures
from lab.measure.run import RunOutcome, threshold_checks
from lab.measure.stats import LatencySummary
from lab.measure.summary import RunSummary

COLUMN = 10


def format_ms(milliseconds: float) -> str:
    return "-" if math.isnan(milliseconds) else f"{milliseconds:.3f}"


def format_bytes(count: float) -> str:
    if math.isnan(count):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.2f}{unit}"
        count /= 1024
    return f"{count:.2f}GB"


def _latency_line(label: str, summary: LatencySummary) -> str:
    return (f"    {label:<9}{format_ms(summary.mean):>{COLUMN}}{format_ms(summary.stdev):>{COLUMN}}"
            f"{format_ms(summary.max):>{COLUMN}}")


def format_report(result: LoadResult) -> str:
    """The report of a fresh run."""
    return format_run(result.summary, result.spec_dict(), result.outcome)


def format_run(summary: RunSummary, load_spec: Mapping[str, Any], outcome: RunOutcome) -> str:
    """The report of a run from its summary, its load settings and what happened to it."""
    lines = [*_heading(load_spec), *_latency_lines(summary), *_count_lines(summary, outcome)]
    lines.append(f"Requests/sec: {summary.rps:>12,.2f}")
    if summary.open_loop:
        lines.extend(_rate_lines(summary))
    per_second = summary.bytes_read / summary.duration_s if summary.duration_s > 0 else float("nan")
    lines.append(f"Transfer/sec: {format_bytes(per_second):>12}")
    checks = threshold_checks(load_spec, summary)
    if checks:
        lines.append("Thresholds:")
        lines.extend(f"  {check.describe()}" for check in checks)
    if outcome.calibration is not None:
        c = outcome.calibration
        lines.append(f"Generator's own latency (calibration, {c['requests']} requests): "
                     f"+{c['added_p50_us']:.1f}us p50, +{c['added_p99_us']:.1f}us p99 over a bare "
                     f"socket loop ({c['baseline_p50_us']:.1f}us / {c['baseline_p99_us']:.1f}us)")
    if outcome.cluster is not None:
        lines.append(f"Dask cluster {outcome.cluster['address']}:")
        lines.extend(f"  {worker['worker']}: {worker['requests']:,} requests"
                     + (" (lost during the run)" if worker["lost"] else "")
                     for worker in outcome.cluster["per_worker"])
    lines.extend(f"Problem: {problem}" for problem in outcome.problems)
    return "\n".join(lines)


def _heading(spec: Mapping[str, Any]) -> list[str]:
    workers, connections = spec.get("workers", 1), spec.get("connections", "?")
    rate = spec.get("rate")
    stages = spec.get("stages") or ()
    if spec.get("mode") == "open" and stages:
        model = f"open loop in rate stages {', '.join(stages)}"
    else:
        model = f"open loop at {rate:g} req/s" if spec.get("mode") == "open" and rate else "closed loop"
    if spec.get("think_ms"):
        model += f", each connection thinking {spec['think_ms']:g} ms on average between requests"
    warmup = spec.get("warmup_seconds") or 0
    return [
        f"Running {spec.get('duration_seconds', 0):g}s test @ {spec.get('url')}"
        + (f" (after {warmup:g}s warm-up)" if warmup else ""),
        f"  {workers} worker{'s' if workers != 1 else ''} and {connections} "
        f"connection{'s' if connections != 1 else ''}, {model}"
        + ("" if spec.get("keepalive", True) else ", a new connection per request"),
    ]


def _latency_lines(summary: RunSummary) -> list[str]:
    corrected = summary.uncorrected
    lines = [f"  {'Latency':<9}{'Avg ms':>{COLUMN}}{'Stdev ms':>{COLUMN}}{'Max ms':>{COLUMN}}"]
    if corrected is not None:
        lines.append(_latency_line("Corrected", summary.latency))
        lines.append(_latency_line("Uncorr.", corrected))
    else:
        lines.append(_latency_line("Latency", summary.latency))
    lines.append(_latency_line("TTFB", summary.ttfb))
    if summary.connect.count:  # only when the run opened connections (reconnects, no keep-alive)
        lines.append(_latency_line("Connect", summary.connect))
    lines.append("  Latency Distribution (ms)" + ("   corrected  uncorrected" if corrected else ""))
    # wrk --latency prints 50/75/90/99; every listed percentile and the max is where latency
    # hides. A percentile is written as wrk writes it (99.9%), beside its max.
    for figure in (*figures.percentiles(), figures.MAX):
        label = figure.label if figure.percent is None else f"{figure.percent:g}%"
        line = f"    {label:>7}  {format_ms(getattr(summary.latency, figure.key)):>{COLUMN}}"
        if corrected is not None:
            line += f"  {format_ms(getattr(corrected, figure.key)):>{COLUMN + 1}}"
        lines.append(line)
    return lines


def _count_lines(summary: RunSummary, outcome: RunOutcome) -> list[str]:
    lines = [f"  {summary.requests:,} requests in {summary.duration_s:.2f}s, "
             f"{format_bytes(summary.bytes_read)} read"]
    if summary.status_codes:
        lines.append("  Status codes:")
        for code, count in summary.status_codes.items():
            timing = summary.by_status[code]
            lines.append(f"    {code}  {count:>12,}   p50 {format_ms(timing.p50)} ms   "
                         f"p99 {format_ms(timing.p99)} ms")
    if summary.errors:
        counts = ", ".join(f"{kind} {count:,}" for kind, count in sorted(summary.errors.items()))
        lines.append(f"  Errors: {counts}")
    if outcome.stopped_early:
        lines.append(f"  Stopped early; {outcome.abandoned:,} requests in flight or queued were abandoned")
    return lines


def _rate_lines(summary: RunSummary) -> list[str]:
    """The target beside what was achieved; in words when the rate was not kept."""
    late_share = summary.late_share if summary.late_share is not None else float("nan")
    target = f"{summary.target_rate:>12,.2f}" if summary.target_rate else f"{'the stages':>12}"
    lines = [f"Target rate:  {target}   late (>{summary.late_after_ms:g} ms): "
             f"{summary.late:,} ({late_share * 100:.1f} %)"]
    if summary.kept_up is False:
        asked = f"the {summary.target_rate:,.0f} asked for" if summary.target_rate else "the stages' rates"
        lines.append(
            f"  The target rate was not kept: {late_share * 100:.1f} % of requests were sent late "
            f"(more than {summary.late_after_ms:g} ms after their intended time); achieved "
            f"{summary.rps:,.0f} responses/s of {asked}.")
    return lines

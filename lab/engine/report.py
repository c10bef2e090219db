"""The text summary of a load run, laid out the way wrk (and wrk2, for the open loop) print."""

from __future__ import annotations

import math

from lab.engine.result import LoadResult
from lab.measure.stats import PERCENTILES, LatencySummary

# wrk --latency prints 50/75/90/99; the tail up to 99.99 and max is where latency hides.
REPORT_PERCENTILES = ("p50", "p90", "p95", "p99", "p99_9", "p99_99")


def format_duration(milliseconds: float) -> str:
    """wrk's unit choice: us below 1 ms, ms below 1 s, s above."""
    if math.isnan(milliseconds):
        return "-"
    if milliseconds < 1:
        return f"{milliseconds * 1000:.2f}us"
    if milliseconds < 1000:
        return f"{milliseconds:.2f}ms"
    return f"{milliseconds / 1000:.2f}s"


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.2f}{unit}"
        count /= 1024
    return f"{count:.2f}GB"


def _percentile_label(key: str) -> str:
    return f"{PERCENTILES[key]:g}%"


def _latency_line(label: str, summary: LatencySummary) -> str:
    return (f"    {label:<9}{format_duration(summary.mean):>10}{format_duration(summary.stdev):>10}"
            f"{format_duration(summary.max):>10}")


def format_report(result: LoadResult) -> str:
    spec = result.spec
    open_loop = spec.mode == "open"
    model = f"open loop at {spec.rate:g} req/s" if open_loop else "closed loop"
    lines = [
        f"Running {spec.duration_seconds:g}s test @ {spec.url}"
        + (f" (after {spec.warmup_seconds:g}s warm-up)" if spec.warmup_seconds else ""),
        f"  {spec.workers} worker{'s' if spec.workers > 1 else ''} and {spec.connections} "
        f"connection{'s' if spec.connections > 1 else ''}, {model}"
        + ("" if spec.keepalive else ", a new connection per request"),
        f"  {'Latency':<9}{'Avg':>10}{'Stdev':>10}{'Max':>10}",
    ]
    if open_loop:
        assert result.latency_uncorrected is not None
        lines.append(_latency_line("Corrected", result.latency))
        lines.append(_latency_line("Uncorr.", result.latency_uncorrected))
    else:
        lines.append(_latency_line("Latency", result.latency))
    lines.append(_latency_line("TTFB", result.ttfb))
    lines.append("  Latency Distribution" + ("   corrected   uncorrected" if open_loop else ""))
    for key in REPORT_PERCENTILES:
        line = f"    {_percentile_label(key):>7}  {format_duration(getattr(result.latency, key)):>10}"
        if open_loop:
            assert result.latency_uncorrected is not None
            line += f"  {format_duration(getattr(result.latency_uncorrected, key)):>12}"
        lines.append(line)
    lines.append(f"    {'max':>7}  {format_duration(result.latency.max):>10}")
    lines.append(f"  {result.requests} requests in {result.duration_s:.2f}s, "
                 f"{format_bytes(result.bytes_read)} read")
    if result.errors:
        counts = ", ".join(f"{kind} {count}" for kind, count in sorted(result.errors.items()))
        lines.append(f"  Errors: {counts}")
    if result.stopped_early:
        lines.append(f"  Stopped early; {result.abandoned} requests in flight or queued were abandoned")
    lines.append(f"Requests/sec: {result.rps:>12,.2f}")
    if open_loop:
        lines.append(f"Target rate:  {spec.rate:>12,.2f}   late (>{spec.late_after_ms:g} ms): {result.late}")
    per_second = result.bytes_read / result.duration_s if result.duration_s > 0 else float("nan")
    lines.append(f"Transfer/sec: {format_bytes(per_second):>12}")
    if result.calibration is not None:
        c = result.calibration
        lines.append(f"Generator's own latency (calibration, {c.requests} requests): "
                     f"+{c.added_p50_us:.1f}us p50, +{c.added_p99_us:.1f}us p99 over a bare socket "
                     f"loop ({c.baseline_p50_us:.1f}us / {c.baseline_p99_us:.1f}us)")
    for problem in result.problems:
        lines.append(f"Problem: {problem}")
    return "\n".join(lines)

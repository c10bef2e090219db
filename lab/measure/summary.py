"""What a run's raw samples add up to: the summary figures and the per-interval timeline.

Everything here is computed from the raw samples (exact percentiles, no histogram), so a
summary can always be recomputed from a saved record and will come out identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from lab.errors import ConfigError
from lab.measure.samples import MISSING, ErrorKind, error_counts, latency_ns, start_ns, ttfb_ns
from lab.measure.stats import PERCENTILES, LatencySummary, percentiles, share_under, summarize
from lab.units import NS_PER_MS, NS_PER_S

# What a latency figure can be measured as; every report, export and plot takes one of these.
METRICS: dict[str, str] = {
    "latency": "latency, from the intended send where there is one (corrected for coordinated omission)",
    "uncorrected": "latency from the actual send (what a closed-loop tool would report)",
    "ttfb": "time to first byte, from the actual send",
    "connect": "TCP connect time, for requests that opened a connection",
}

# The seed article's "99.57 % under 2 ms" and its neighbours.
DEFAULT_THRESHOLDS_MS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)

# Timeline intervals are picked from these "round" lengths, in seconds.
NICE_INTERVALS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
                    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)


def succeeded(samples: np.ndarray) -> np.ndarray:
    return np.asarray(samples[samples["error"] == ErrorKind.NONE])


def is_open_loop(samples: np.ndarray) -> bool:
    """True when the samples carry intended send times (the open loop's schedule)."""
    return bool(np.any(samples["intended_ns"] != MISSING))


def metric_ns(samples: np.ndarray, metric: str) -> np.ndarray:
    """One figure per successful request, in nanoseconds, for a metric named in ``METRICS``."""
    if metric == "latency":
        return latency_ns(samples, corrected=True)
    if metric == "uncorrected":
        return latency_ns(samples, corrected=False)
    if metric == "ttfb":
        return ttfb_ns(samples)
    if metric == "connect":
        ok = succeeded(samples)
        return np.asarray(ok["connect_ns"][ok["connect_ns"] != MISSING], dtype=np.int64)
    raise ConfigError("metric", f"{metric!r} is not allowed; allowed: one of {', '.join(METRICS)}")


def completion_ns(samples: np.ndarray) -> np.ndarray:
    """When each request ended: its completion, or its start if it never got that far."""
    return np.where(samples["done_ns"] != MISSING, samples["done_ns"], start_ns(samples))


def run_span_ns(samples: np.ndarray) -> tuple[int, int]:
    """(first start, last completion) of a run; (0, 0) when there are no samples."""
    if samples.size == 0:
        return 0, 0
    return int(start_ns(samples).min()), int(completion_ns(samples).max())


def threshold_key(threshold_ms: float) -> str:
    return f"{threshold_ms:g}"


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """The figures a report prints for one run; latencies in milliseconds."""

    requests: int  # every request the run attempted, failed ones included
    succeeded: int
    errors: dict[str, int]  # failed requests by ErrorKind label, only kinds that occurred
    duration_s: float  # first start to last completion
    requests_per_s: float  # all requests over the duration, as wrk's Requests/sec
    open_loop: bool  # intended send times exist, so ``latency`` is corrected
    latency: LatencySummary  # from the intended send where there is one
    uncorrected: LatencySummary | None  # from the actual send; None in a closed loop (== latency)
    ttfb: LatencySummary
    connect: LatencySummary
    share_under: dict[str, float]  # threshold in ms ("2") -> fraction of successful requests below it

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: NaN becomes None (JSON has no NaN)."""
        plain: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, LatencySummary):
                value = {key: _none_for_nan(v) for key, v in value.as_dict().items()}
            elif isinstance(value, dict):
                value = {key: _none_for_nan(v) for key, v in value.items()}
            else:
                value = _none_for_nan(value)
            plain[field.name] = value
        return plain

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunSummary:
        def latency(key: str) -> LatencySummary | None:
            part = values.get(key)
            if part is None:
                return None
            return LatencySummary(**{k: _nan_for_none(v) for k, v in part.items()})
        return cls(
            requests=int(values["requests"]), succeeded=int(values["succeeded"]),
            errors={k: int(v) for k, v in values["errors"].items()},
            duration_s=_nan_for_none(values["duration_s"]),
            requests_per_s=_nan_for_none(values["requests_per_s"]),
            open_loop=bool(values["open_loop"]),
            latency=latency("latency"),  # type: ignore[arg-type]
            uncorrected=latency("uncorrected"),
            ttfb=latency("ttfb"), connect=latency("connect"),  # type: ignore[arg-type]
            share_under={k: _nan_for_none(v) for k, v in values["share_under"].items()})


def _none_for_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _nan_for_none(value: Any) -> Any:
    return float("nan") if value is None else value


def summarize_run(samples: np.ndarray, *,
                  thresholds_ms: Sequence[float] = DEFAULT_THRESHOLDS_MS) -> RunSummary:
    first, last = run_span_ns(samples)
    duration_s = (last - first) / NS_PER_S
    open_loop = is_open_loop(samples)
    latencies = metric_ns(samples, "latency")
    return RunSummary(
        requests=int(samples.size),
        succeeded=int(latencies.size),
        errors=error_counts(samples),
        duration_s=duration_s,
        requests_per_s=samples.size / duration_s if duration_s > 0 else float("nan"),
        open_loop=open_loop,
        latency=summarize(latencies),
        uncorrected=summarize(metric_ns(samples, "uncorrected")) if open_loop else None,
        ttfb=summarize(metric_ns(samples, "ttfb")),
        connect=summarize(metric_ns(samples, "connect")),
        share_under={threshold_key(t): share_under(latencies, t) for t in thresholds_ms})


# --- timeline -------------------------------------------------------------------------------

TIMELINE_COLUMNS = ("start_s", "duration_s", "requests", "requests_per_s", "errors", "errors_per_s",
                    "p50_ms", "p99_ms", "max_ms")


def pick_interval_s(duration_s: float) -> float:
    """About 20 intervals for a short run, one per second (as wrk2 reports) for a longer one,
    and never more than about 1000 intervals."""
    target = duration_s / 20 if duration_s < 20 else max(1.0, duration_s / 1000)
    return next((step for step in NICE_INTERVALS_S if step >= target), NICE_INTERVALS_S[-1])


def timeline(samples: np.ndarray, interval_s: float | None = None) -> pd.DataFrame:
    """Per interval of the run (by completion time): request and error rates, p50/p99/max latency.

    Latency is the corrected figure (from the intended send where there is one), of the
    successful requests that completed in the interval.
    """
    first, last = run_span_ns(samples)
    if samples.size == 0:
        return pd.DataFrame({column: pd.Series(dtype="float64") for column in TIMELINE_COLUMNS})
    if interval_s is None:
        interval_s = pick_interval_s((last - first) / NS_PER_S)
    interval_ns = max(1, round(interval_s * NS_PER_S))
    span_ns = last - first
    count = max(1, -(-span_ns // interval_ns))
    if count > 1 and span_ns - (count - 1) * interval_ns < interval_ns / 2:
        count -= 1  # a stub of an interval at the end would give a rate from a handful of requests
    # The request that ends the run ends exactly on the last boundary: it belongs to the last
    # interval, not to an empty one of its own.
    bucket = np.minimum((completion_ns(samples) - first) // interval_ns, count - 1)
    requests = np.bincount(bucket, minlength=count)
    errors = np.bincount(bucket[samples["error"] != ErrorKind.NONE], minlength=count)
    starts = np.arange(count) * interval_ns
    # The last interval ends with the run, so its rates are over its real (shorter) length.
    lengths_s = (span_ns - starts) / NS_PER_S
    lengths_s[:-1] = interval_ns / NS_PER_S
    lengths_s[lengths_s <= 0] = np.nan
    p50, p99, peak = _interval_latencies(samples, bucket, count)
    return pd.DataFrame({
        "start_s": starts / NS_PER_S, "duration_s": lengths_s,
        "requests": requests, "requests_per_s": requests / lengths_s,
        "errors": errors, "errors_per_s": errors / lengths_s,
        "p50_ms": p50, "p99_ms": p99, "max_ms": peak})


def _interval_latencies(samples: np.ndarray, bucket: np.ndarray,
                        count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = samples["error"] == ErrorKind.NONE
    values = (samples["done_ns"][ok] - start_ns(samples[ok])) / NS_PER_MS
    ok_bucket = bucket[ok]
    order = np.lexsort((values, ok_bucket))
    values, ok_bucket = values[order], ok_bucket[order]
    edges = np.searchsorted(ok_bucket, np.arange(count + 1))
    p50, p99, peak = (np.full(count, np.nan) for _ in range(3))
    for index in range(count):
        part = values[edges[index]:edges[index + 1]]
        if part.size:
            p50[index], p99[index] = percentiles(part, (PERCENTILES["p50"], PERCENTILES["p99"]))
            peak[index] = part[-1]
    return p50, p99, peak

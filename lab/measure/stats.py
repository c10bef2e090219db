"""Exact summaries of latency samples: the figures every report in the lab prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from lab.units import NS_PER_MS

# The percentiles every report shows (a mean hides the tail), and their JSON keys.
PERCENTILES: dict[str, float] = {
    "p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99_9": 99.9, "p99_99": 99.99,
}



@dataclass(frozen=True, kw_only=True)
class LatencySummary:
    """Summary of one latency distribution, in milliseconds (NaN where there are no samples)."""

    count: int
    mean: float
    stdev: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    p99_9: float
    p99_99: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def percentiles(values: npt.ArrayLike, percents: Sequence[float]) -> list[float]:
    """Exact percentiles of ``values``, each one a value that was observed.

    numpy's "higher" method picks a sample, never an interpolation between two: a p99.99 that
    some request really took. Every percentile the lab prints goes through here.
    """
    points = np.percentile(np.asarray(values, dtype=np.float64), list(percents), method="higher")
    return [float(p) for p in points]


def percentile(values: npt.ArrayLike, percent: float) -> float:
    """One exact percentile (see :func:`percentiles`)."""
    return percentiles(values, [percent])[0]


def summarize(latencies_ns: np.ndarray) -> LatencySummary:
    """Exact percentiles from the raw samples (no histogram in between)."""
    values = np.asarray(latencies_ns, dtype=np.float64) / NS_PER_MS
    if values.size == 0:
        nan = float("nan")
        return LatencySummary(count=0, mean=nan, stdev=nan, min=nan, max=nan,
                              **{key: nan for key in PERCENTILES})
    points = percentiles(values, list(PERCENTILES.values()))
    return LatencySummary(
        count=int(values.size), mean=float(values.mean()), stdev=float(values.std()),
        min=float(np.min(values)), max=float(np.max(values)),
        **dict(zip(PERCENTILES, points, strict=True)))


def share_under(latencies_ns: np.ndarray, threshold_ms: float) -> float:
    """Fraction of samples strictly below a threshold (the seed's "99.57 % under 2 ms")."""
    values = np.asarray(latencies_ns)
    if values.size == 0:
        return float("nan")
    return float(np.count_nonzero(values < threshold_ms * NS_PER_MS) / values.size)

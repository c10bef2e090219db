"""A hiccup series' figures: how late an event loop woke (lab/resources.py's meter), as a
distribution and as the few largest stalls placed on a run's time axis.

A series is any array with ``at_ns`` (when the loop woke, perf_counter_ns: the samples' clock)
and ``hiccup_ns`` (how late) fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.measure.samples import start_ns as samples_start_ns
from lab.measure.stats import LatencySummary, summarize
from lab.measure.summary import measured_window_ns
from lab.units import NS_PER_MS, NS_PER_S


def hiccup_summary(series: np.ndarray) -> LatencySummary:
    """The hiccups' distribution in ms, as a latency's (exact percentiles, max)."""
    return summarize(series["hiccup_ns"])


def largest_hiccups(series: np.ndarray, count: int = 5, *, start_ns: int = 0) -> list[tuple[float, float]]:
    """The ``count`` largest hiccups as (when it ended, in s since ``start_ns``; length in ms),
    largest first."""
    order = np.argsort(series["hiccup_ns"], kind="stable")[::-1][:count]
    return [(float((series["at_ns"][index] - start_ns) / NS_PER_S),
             float(series["hiccup_ns"][index] / NS_PER_MS)) for index in order]


# A record keeps each loop's hiccups at this resolution: the largest of each 100 ms. A pause
# keeps its size and its place; the 1 ms ticks themselves (~600 kB a minute) are not kept.
RECORDED_INTERVAL_S = 0.1


@dataclass(frozen=True, kw_only=True)
class HiccupRecord:
    """One loop's hiccups during a run, as a record keeps them beside its samples."""

    source: str  # whose loop: "server" (every worker's) or "generator"
    distribution: LatencySummary  # every tick's hiccup, ms
    interval_s: float
    # (interval start in s since the run's first request, largest hiccup in it in ms), for
    # every interval with a tick in it
    series: tuple[tuple[float, float], ...]

    def as_dict(self) -> dict[str, Any]:
        distribution = {key: None if isinstance(value, float) and math.isnan(value) else value
                        for key, value in self.distribution.as_dict().items()}
        return {"source": self.source, "interval_s": self.interval_s, "distribution": distribution,
                "series": [list(point) for point in self.series]}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HiccupRecord:
        """Inverse of :meth:`as_dict`; KeyError/TypeError/ValueError for what is not one."""
        figures = {str(key): math.nan if value is None else float(value)
                   for key, value in dict(values["distribution"]).items()}
        series = tuple((float(start), float(peak)) for start, peak in values["series"])
        interval = float(values["interval_s"])
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"hiccups.interval_s must be positive, not {interval!r}")
        if not all(math.isfinite(start) and math.isfinite(peak) and peak >= 0 for start, peak in series):
            raise ValueError("hiccups.series: a hiccup must be a finite number of ms, not negative")
        return cls(source=str(values["source"]), interval_s=interval,
                   distribution=LatencySummary.of(figures), series=series)

    def largest(self) -> tuple[float, float]:
        """(when its interval began, s into the run; its size, ms) of the largest hiccup."""
        return max(self.series, key=lambda point: point[1], default=(math.nan, math.nan))


def hiccup_record(series: np.ndarray, *, source: str, start_ns: int, end_ns: int | None = None,
                  interval_s: float = RECORDED_INTERVAL_S) -> HiccupRecord:
    """What a record keeps of a meter's series for a run that began at ``start_ns`` (the
    run's first request, perf_counter_ns) and ended at ``end_ns`` (default: the series' end)."""
    end = int(series["at_ns"].max()) if end_ns is None and series.size else (end_ns or start_ns)
    inside = series[(series["at_ns"] >= start_ns) & (series["at_ns"] <= end)]
    interval_ns = max(1, round(interval_s * NS_PER_S))
    buckets = (inside["at_ns"] - start_ns) // interval_ns
    peaks: dict[int, int] = {}
    for bucket, hiccup in zip(buckets.tolist(), inside["hiccup_ns"].tolist(), strict=True):
        peaks[bucket] = max(peaks.get(bucket, 0), hiccup)
    return HiccupRecord(source=source, distribution=hiccup_summary(inside), interval_s=interval_s,
                        series=tuple((round(bucket * interval_s, 6), peak / NS_PER_MS)
                                     for bucket, peak in sorted(peaks.items())))


def run_hiccup_record(series: np.ndarray, *, source: str, samples: np.ndarray,
                      window_ns: tuple[int, int] | None) -> HiccupRecord:
    """:func:`hiccup_record` on a run's own time axis: from its first measured request to the
    end of its measured window (``samples``: the measured ones). A meter ticks before and after
    a run too; both the server's and the generator's are cut the same way, so their series
    line up."""
    first, last = measured_window_ns(samples, window_ns)
    if samples.size:
        first = int(samples_start_ns(samples).min())
    return hiccup_record(series, source=source, start_ns=first, end_ns=last)


def describe_hiccups(hiccups: HiccupRecord) -> str:
    """One line for ``show``: the distribution and where the largest one was."""
    figures = hiccups.distribution
    start_s, peak_ms = hiccups.largest()
    where = (f"; largest in the {hiccups.interval_s:g} s from {start_s:.2f} s into the run"
             if not math.isnan(peak_ms) else "")
    return (f"hiccups of the {hiccups.source}'s loop ({figures.count} ticks): p50 {figures.p50:.2f} ms, "
            f"p99 {figures.p99:.2f} ms, p99.9 {figures.p99_9:.2f} ms, max {figures.max:.2f} ms{where}")

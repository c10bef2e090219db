"""The HdrHistogram percentile distribution (``.hgrm``), as wrk2 prints it with ``--latency``.

wrk2 ends its report with ``hdr_percentiles_print(histogram, stdout, 5, 1000.0, CLASSIC)``:
microsecond values scaled to milliseconds, 5 percentile ticks per half-distance, and the
CLASSIC layout (``%12.3f %12f %12d %12.2f`` rows, a ``#[Mean ...]`` footer). The public
HdrHistogram plotter (hdrhistogram.github.io/HdrHistogram/plotFiles.html) reads that text.

One deliberate difference: HdrHistogram keeps 3 significant digits and prints the highest
value equivalent to each bucket; we iterate over the exact raw samples instead, so a row's
value is a latency some request really had and its TotalCount is exactly the number of
requests at or below it. The walk through percentiles is HdrHistogram's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lab.units import NS_PER_MS, NS_PER_US

TICKS_PER_HALF_DISTANCE = 5  # what wrk2 passes
SIGNIFICANT_FIGURES = 3  # wrk2's histograms: hdr_init(1, MAX_LATENCY, 3, ...)
LOWEST_TRACKABLE_US = 1
HIGHEST_TRACKABLE_US = 24 * 60 * 60 * 1_000_000  # wrk2's MAX_LATENCY: one day in microseconds


@dataclass(frozen=True)
class PercentileRow:
    value_ns: int  # the smallest sample at or above the percentile
    percentile: float  # 0..100, the level HdrHistogram's iterator stopped at
    total_count: int  # samples <= value_ns

    @property
    def fraction(self) -> float:
        return self.percentile / 100.0

    @property
    def inverse(self) -> float:
        """1/(1-p): the x axis of a percentile-spectrum plot (infinite at 100 %)."""
        return math.inf if self.fraction >= 1.0 else 1.0 / (1.0 - self.fraction)


def next_percentile_level(level: float, ticks_per_half_distance: int) -> float:
    """HdrHistogram's step: ``ticks`` rows per halving of the distance to 100 %, so the rows
    crowd in towards the tail (0, 10, 20, ... 50, 55, ... 75, 77.5, ...)."""
    half_distance = 2 ** (int(math.log(100.0 / (100.0 - level)) / math.log(2)) + 1)
    return level + 100.0 / float(ticks_per_half_distance * half_distance)


def percentile_distribution(latencies_ns: np.ndarray,
                            ticks_per_half_distance: int = TICKS_PER_HALF_DISTANCE) -> list[PercentileRow]:
    """The rows of the percentile spectrum, computed from exact samples."""
    values = np.asarray(latencies_ns, dtype=np.int64)
    if values.size == 0:
        return []
    distinct, counts = np.unique(values, return_counts=True)
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])
    # The same float expression as hdr_percentile_iter_next, so rows land where wrk2's do.
    reached = (100.0 * cumulative) / total
    last = distinct.size - 1
    rows: list[PercentileRow] = []
    level = 0.0
    while True:
        index = min(int(np.searchsorted(reached, level, side="left")), last)
        rows.append(PercentileRow(int(distinct[index]), level, int(cumulative[index])))
        if index == last:
            break
        level = next_percentile_level(level, ticks_per_half_distance)
    rows.append(PercentileRow(int(distinct[last]), 100.0, total))
    return rows


def bucket_layout(max_value_us: float) -> tuple[int, int]:
    """(bucket count, sub-bucket count) of the histogram wrk2 would use, as hdr_init computes."""
    largest_with_unit_resolution = 2 * 10 ** SIGNIFICANT_FIGURES
    sub_bucket_count_magnitude = math.ceil(math.log(largest_with_unit_resolution) / math.log(2))
    sub_bucket_count = 2 ** max(sub_bucket_count_magnitude, 1)
    trackable = sub_bucket_count - 1  # unit magnitude 0: the lowest trackable value is 1 us
    highest = max(HIGHEST_TRACKABLE_US, math.ceil(max_value_us))
    buckets = 1
    while trackable < highest:
        trackable <<= 1
        buckets += 1
    return buckets, sub_bucket_count


def format_hgrm(latencies_ns: np.ndarray,
                ticks_per_half_distance: int = TICKS_PER_HALF_DISTANCE) -> str:
    """The full text: header, one row per percentile tick, and the footer, values in ms."""
    values = np.asarray(latencies_ns, dtype=np.int64)
    lines = [f"{'Value':>12} {'Percentile':>12} {'TotalCount':>12} {'1/(1-Percentile)':>12}\n\n"]
    for row in percentile_distribution(values, ticks_per_half_distance):
        lines.append(f"{row.value_ns / NS_PER_MS:12.3f} {row.fraction:12f} "
                     f"{row.total_count:12d} {row.inverse:12.2f}\n")
    as_ms = values / NS_PER_MS
    mean = float(as_ms.mean()) if values.size else 0.0
    stdev = float(as_ms.std()) if values.size else 0.0  # population, as hdr_stddev
    peak = float(np.max(as_ms)) if values.size else 0.0
    buckets, sub_buckets = bucket_layout(peak * NS_PER_MS / NS_PER_US)
    lines.append(f"#[Mean    = {mean:12.3f}, StdDeviation   = {stdev:12.3f}]\n")
    lines.append(f"#[Max     = {peak:12.3f}, Total count    = {values.size:12d}]\n")
    lines.append(f"#[Buckets = {buckets:12d}, SubBuckets     = {sub_buckets:12d}]\n")
    return "".join(lines)

"""Latency as a dashboard sees it: a Prometheus histogram and ``histogram_quantile``.

A Prometheus histogram keeps, per bucket upper bound ``le``, how many observations were at
or below it (cumulative, the last bound ``+Inf``). ``histogram_quantile(q, ...)`` estimates a
quantile from those counts alone: it finds the bucket the q-th observation falls in and
interpolates linearly between its bounds, as if the observations inside were spread evenly.
:func:`histogram_quantile` is that estimate, step by step as promql/quantile.go's
``bucketQuantile`` computes it (sorted bounds, equal bounds coalesced, counts forced to be
monotonic, 0 as the lowest bucket's lower bound, the second-highest bound when the rank lands
in ``+Inf``), so the lab can show it beside the exact percentile of the same requests.

Two ways to combine instances, the lesson of the notebook: summing bucket counts (what
``sum by (le)`` does, :func:`merge_buckets`) is lossless for the buckets; averaging each
instance's quantile is not a quantile of anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from lab.measure.stats import percentile
from lab.units import NS_PER_S

if TYPE_CHECKING:
    import pandas as pd

# (upper bound ``le`` in seconds, observations at or below it): one bucket as scraped.
Bucket = tuple[float, float]


def cumulative_buckets(values_s: np.ndarray, bounds: Sequence[float]) -> list[Bucket]:
    """The buckets a Prometheus histogram with these bounds would hold after observing
    ``values_s`` (seconds): cumulative counts, ``+Inf`` last."""
    ordered = np.sort(np.asarray(values_s, dtype=np.float64))
    at_or_below = np.searchsorted(ordered, np.asarray(bounds, dtype=np.float64), side="right")
    return [*((float(bound), float(count)) for bound, count in zip(bounds, at_or_below, strict=True)),
            (math.inf, float(ordered.size))]


def merge_buckets(*instances: Sequence[Bucket]) -> list[Bucket]:
    """``sum by (le)``: the counts of several instances' histograms added bound by bound."""
    total: dict[float, float] = {}
    for buckets in instances:
        for bound, count in buckets:
            total[bound] = total.get(bound, 0.0) + count
    return sorted(total.items())


def histogram_quantile(q: float, buckets: Sequence[Bucket]) -> float:
    """What PromQL's ``histogram_quantile(q, ...)`` returns for these cumulative buckets."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets, key=lambda bucket: bucket[0])
    if not ordered or not math.isinf(ordered[-1][0]):
        return math.nan
    bounds, counts = _coalesced(ordered)
    _correct_precision(counts, 1e-12)
    _force_monotonic(counts)
    if len(bounds) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    # The first bucket (not +Inf) whose count reaches the rank; the +Inf one if none does.
    found = next((index for index in range(len(bounds) - 1) if counts[index] >= rank),
                 len(bounds) - 1)
    if found == len(bounds) - 1:
        return bounds[-2]
    if found == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[found], counts[found]
    if found > 0:
        start = bounds[found - 1]
        count -= counts[found - 1]
        rank -= counts[found - 1]
    return start + (end - start) * (rank / count)


def _coalesced(ordered: Sequence[Bucket]) -> tuple[list[float], list[float]]:
    """Buckets with the same bound merged (their counts added), as Prometheus does."""
    bounds: list[float] = []
    counts: list[float] = []
    for bound, count in ordered:
        if bounds and bound == bounds[-1]:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(count)
    return bounds, counts


def _correct_precision(counts: list[float], tolerance: float) -> None:
    """Counts that differ from the previous one by float noise only are set equal to it."""
    previous = counts[0]
    for index in range(1, len(counts)):
        current = counts[index]
        delta = abs(current - previous)
        if delta == 0:
            continue
        if delta / current <= tolerance:
            counts[index] = previous
        else:
            previous = current


def _force_monotonic(counts: list[float]) -> None:
    """A count below an earlier one (inconsistent data) is raised to it: the envelope."""
    highest = counts[0]
    for index in range(1, len(counts)):
        if counts[index] > highest:
            highest = counts[index]
        elif counts[index] < highest:
            counts[index] = highest


def scraped_buckets(text: str, metric: str | None = None) -> list[Bucket]:
    """The ``<metric>_bucket`` series of a scrape in the Prometheus text format (default: of
    its only histogram), as buckets, every label set's counts added by ``le`` as
    ``sum by (le)`` would."""
    from prometheus_client.parser import text_string_to_metric_families

    families = [family for family in text_string_to_metric_families(text)
                if family.type == "histogram" and metric in (None, family.name)]
    if len(families) != 1:
        raise ValueError(f"the text has {len(families)} histograms "
                         + (f"named {metric}" if metric else "(name the one you mean)"))
    total: dict[float, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == f"{family.name}_bucket":
                bound = float(sample.labels["le"])
                total[bound] = total.get(bound, 0.0) + float(sample.value)
    return sorted(total.items())


def dashboard_table(latencies_ns: np.ndarray, layouts: Mapping[str, Sequence[float]],
                    quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> pd.DataFrame:
    """For each quantile: the exact value of these latencies (ms) beside what
    ``histogram_quantile`` would report from a histogram of them with each bucket layout
    (bounds in seconds, +Inf added), and how far off that is."""
    import pandas as pd  # here: a server or generator process never needs it

    values_s = np.asarray(latencies_ns, dtype=np.float64) / NS_PER_S
    rows = []
    for q in quantiles:
        exact_ms = percentile(values_s, 100 * q) * 1000 if values_s.size else math.nan
        row: dict[str, float | str] = {"quantile": f"p{100 * q:g}", "exact_ms": exact_ms}
        for name, bounds in layouts.items():
            estimate_ms = histogram_quantile(q, cumulative_buckets(values_s, bounds)) * 1000
            row[f"{name}_ms"] = estimate_ms
            row[f"{name}_off"] = estimate_ms / exact_ms if exact_ms else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("quantile")

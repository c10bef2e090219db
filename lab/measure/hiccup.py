"""A hiccup series' figures: how late an event loop woke (lab/http/hiccup.py's meter), as a
distribution and as the few largest stalls placed on a run's time axis.

A series is any array with ``at_ns`` (when the loop woke, perf_counter_ns: the samples' clock)
and ``hiccup_ns`` (how late) fields.
"""

from __future__ import annotations

import numpy as np

from lab.measure.stats import LatencySummary, summarize
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

"""The seed article's figures, and ours printed the same way, for side-by-side tables.

The article (a Rust server claiming sub-millisecond latency from TCP_NODELAY, SO_LINGER,
buffer sizes and keep-alive, measured with wrk and ab on loopback) reports average, standard
deviation, max, "% of requests under 2 ms" and p50/p95/p99 in milliseconds. Its absolute
numbers come from another machine; only ratios measured in one run compare.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from lab.engine.result import LoadResult
from lab.measure.summary import threshold_key

UNDER_MS = 2.0  # the article's "% under 2 ms": one of the shares every summary has
COLUMNS = ("avg ms", "stdev ms", "max ms", f"% under {UNDER_MS:g} ms", "p50 ms", "p95 ms",
           "p99 ms", "requests/s")

NAN = math.nan

# What the article printed for each experiment (NaN: the article does not say).
SEED_FIGURES: dict[str, dict[str, float]] = {
    "360 connections, 60 s (wrk)": {
        "avg ms": 1.46, "stdev ms": 7.74, "max ms": 230.59, f"% under {UNDER_MS:g} ms": 99.57},
    "1000 connections, 1M requests (ab -k)": {
        "avg ms": 3.251, "p50 ms": 3.0, "p95 ms": 6.0, "p99 ms": 7.0},
    "Express.js": {"avg ms": 8.2, "p95 ms": 15.0},
    "Gin": {"avg ms": 4.7, "p95 ms": 10.0},
}

# "These TCP optimizations alone reduced average response times by 15-20%."
SEED_TCP_TUNING_GAIN = (0.15, 0.20)


def article_figures(result: LoadResult) -> dict[str, float]:
    """One run's figures in the article's terms (latency from the actual send; a closed loop
    has no other)."""
    summary = result.summary
    latency = summary.latency
    return {
        "avg ms": latency.mean, "stdev ms": latency.stdev, "max ms": latency.max,
        f"% under {UNDER_MS:g} ms": summary.share_under[threshold_key(UNDER_MS)] * 100,
        "p50 ms": latency.p50, "p95 ms": latency.p95, "p99 ms": latency.p99,
        "requests/s": summary.rps,
    }


def article_table(results: Mapping[str, LoadResult], *, seed_rows: Mapping[str, str] | None = None,
                  ) -> pd.DataFrame:
    """Our runs in the article's format, each followed by the article's own row when
    ``seed_rows`` maps the run's label to a key of :data:`SEED_FIGURES`."""
    rows: list[dict[str, float | str]] = []
    for label, result in results.items():
        rows.append({"run": f"this machine: {label}", **article_figures(result)})
        seed_key = (seed_rows or {}).get(label)
        if seed_key is not None:
            rows.append({"run": f"article: {seed_key}", **SEED_FIGURES[seed_key]})
    table = pd.DataFrame(rows, columns=["run", *COLUMNS]).set_index("run")
    return table.astype(float).round(3)

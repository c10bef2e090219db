"""Small helpers the teaching notebooks share: a finished load run as a record, and the
compact table of figures a reader needs (requests/s, p50/p90/p99/p99.9, max).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lab.load_result import LoadResult
from lab.records import Record
from lab.stats import LatencySummary

# (column, LatencySummary attribute)
PERCENTILE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("mean ms", "mean"), ("p50 ms", "p50"), ("p90 ms", "p90"), ("p99 ms", "p99"),
    ("p99.9 ms", "p99_9"), ("max ms", "max"),
)


def as_record(result: LoadResult, *, name: str, server_config: Any = None, notes: str = "") -> Record:
    """A record of a run's measured part (the warm-up left out), for the plots and compare()."""
    return Record.create(samples=result.measured_samples(), load_spec=result.spec_dict(),
                         server_config=server_config, name=name, notes=notes)


def figures(records: Sequence[Record], *, uncorrected: bool = True) -> pd.DataFrame:
    """One row per record: requests/s, errors, and the latency percentiles in milliseconds.

    Latency is corrected for coordinated omission where the run has intended send times (the
    open loop). With ``uncorrected``, each open-loop record gets a second row measured from
    the actual send: the figure a tool without the correction would print.
    """
    rows = []
    for record in records:
        summary = record.summary
        rows.append(_row(record.name, summary.requests_per_s, summary.error_total, summary.latency))
        if uncorrected and summary.uncorrected is not None:
            rows.append(_row(f"{record.name}, uncorrected", summary.requests_per_s,
                             summary.error_total, summary.uncorrected))
    return pd.DataFrame(rows).set_index("run").round(3)


def _row(name: str, requests_per_s: float, errors: int, latency: LatencySummary) -> dict[str, Any]:
    row: dict[str, Any] = {"run": name, "requests/s": round(requests_per_s), "errors": errors}
    row.update({column: getattr(latency, key) for column, key in PERCENTILE_COLUMNS})
    return row

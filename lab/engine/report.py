"""The text report of a load run, laid out the way wrk (and wrk2, for the open loop) print.

The layout is :func:`lab.measure.report.format_run`, shared with every other view of a run;
this module gives it a fresh run, and keeps its names importable from here.
"""

from __future__ import annotations

from lab.engine.result import LoadResult
from lab.measure.hiccup import describe_hiccups
from lab.measure.report import COLUMN, format_bytes, format_ms, format_run

__all__ = ["COLUMN", "format_bytes", "format_ms", "format_report", "format_run"]


def format_report(result: LoadResult) -> str:
    """The report of a fresh run; with ``hiccup_meter``, the generator's hiccups below it, in
    the line ``show`` prints for a record."""
    text = format_run(result.summary, result.spec_dict(), result.outcome)
    hiccups = result.generator_hiccup_record()
    return text if hiccups is None else f"{text}\n{describe_hiccups(hiccups)}"

"""A run as an HdrHistogram interval log (``.hlog``): one compressed histogram per interval.

The format is the one HdrHistogram's ``HistogramLogWriter`` writes and its readers
(``HistogramLogReader`` in every port, HistogramLogAnalyzer, ``HistogramLogProcessor``) read:
comment lines (``#[StartTime: ...]``, ``#[BaseTime: ...]``), a legend, then one line per
interval -- ``Tag=<tag>,<start s>,<length s>,<max>,<base64 compressed histogram>``. The
histograms are encoded by the ``hdrhistogram`` package (``hdrh``), so the payload is the
libraries' own, not a lookalike.

Choices, each the convention of the tools that read these logs:

- values in nanoseconds, the interval's max in milliseconds (``max_value_unit_ratio`` 1e6,
  what jHiccup writes and HistogramLogProcessor assumes);
- 3 significant digits, as wrk2 and jHiccup keep;
- an interval holds the requests that *completed* in it (as the run's timeline does): a
  stall shows in the interval where its victims finally came back;
- two tags per interval: ``corrected`` (from the intended send, wrk2's "Recorded Latency";
  in a closed loop, where there is no schedule, the same as the other) and ``uncorrected``
  (from the actual send), so one file shows what coordinated omission hides.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from lab.measure.samples import ErrorKind, start_ns
from lab.measure.summary import completion_ns
from lab.units import NS_PER_MS, NS_PER_S

SIGNIFICANT_FIGURES = 3
LOWEST_TRACKABLE_NS = 1
HIGHEST_TRACKABLE_NS = 24 * 60 * 60 * NS_PER_S  # a day, wrk2's bound
MAX_VALUE_UNIT_RATIO = NS_PER_MS  # the interval's max column, in ms
CORRECTED_TAG = "corrected"
UNCORRECTED_TAG = "uncorrected"
DEFAULT_INTERVAL_S = 1.0
LOG_FORMAT_VERSION = "1.3"  # the version with tags


@dataclass(frozen=True)
class Interval:
    """One interval of the log: its place in the run and its two histograms."""

    start_s: float  # since the run's first request started
    length_s: float
    corrected: HdrHistogram
    uncorrected: HdrHistogram


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_TRACKABLE_NS, HIGHEST_TRACKABLE_NS, SIGNIFICANT_FIGURES)


def intervals(samples: np.ndarray, interval_s: float = DEFAULT_INTERVAL_S) -> Iterator[Interval]:
    """The run's successful requests, interval by interval of completion time; an interval
    with no request in it is kept (an empty histogram), so the log has no holes in time."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    ok = samples[samples["error"] == ErrorKind.NONE]
    if samples.size == 0:
        return
    first = int(start_ns(samples).min())
    last = int(completion_ns(samples).max())
    interval_ns = max(1, round(interval_s * NS_PER_S))
    count = max(1, -(-(last - first) // interval_ns))
    done = ok["done_ns"]
    corrected = np.asarray(done - start_ns(ok), dtype=np.int64)
    uncorrected = np.asarray(done - ok["sent_ns"], dtype=np.int64)
    # The request that ends the run ends on the last boundary: it belongs to the last interval.
    bucket = np.minimum((done - first) // interval_ns, count - 1)
    for index in range(count):
        inside = bucket == index
        begin_ns = index * interval_ns
        length_ns = min(interval_ns, (last - first) - begin_ns) if index == count - 1 else interval_ns
        yield Interval(begin_ns / NS_PER_S, max(length_ns, 0) / NS_PER_S,
                       _histogram(corrected[inside]), _histogram(uncorrected[inside]))


def _histogram(values_ns: np.ndarray) -> HdrHistogram:
    histogram = new_histogram()
    distinct, counts = np.unique(values_ns, return_counts=True)
    for value, count in zip(distinct.tolist(), counts.tolist(), strict=True):
        # Below the lowest trackable value (a clock that read the same twice) counts as it.
        if not histogram.record_value(max(value, LOWEST_TRACKABLE_NS), count):
            raise ValueError(f"latency {value} ns is beyond what an interval log holds (a day)")
    return histogram


def hlog_text(samples: np.ndarray, *, started_at: dt.datetime,
              interval_s: float = DEFAULT_INTERVAL_S, comment: str = "") -> str:
    """The interval log of a run whose first request started at ``started_at`` (wall clock)."""
    start_epoch_s = started_at.timestamp()
    out = io.StringIO()
    if comment:
        out.write(f"#{' '.join(comment.splitlines())}\n")
    out.write(f"#[Histogram log format version {LOG_FORMAT_VERSION}]\n")
    out.write(f"#[StartTime: {start_epoch_s:.3f} (seconds since epoch), "
              f"{started_at.astimezone(dt.UTC).isoformat()}]\n")
    # Interval timestamps are relative to the run's start; BaseTime says so to every reader.
    out.write(f"#[BaseTime: {start_epoch_s:.3f} (seconds since epoch)]\n")
    out.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
    for interval in intervals(samples, interval_s):
        for tag, histogram in ((CORRECTED_TAG, interval.corrected),
                               (UNCORRECTED_TAG, interval.uncorrected)):
            peak_ms = histogram.get_max_value() / MAX_VALUE_UNIT_RATIO
            payload = histogram.encode().decode("ascii")
            out.write(f"Tag={tag},{interval.start_s:.3f},{interval.length_s:.3f},"
                      f"{peak_ms:.3f},{payload}\n")
    return out.getvalue()

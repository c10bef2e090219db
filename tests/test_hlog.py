"""``export --format hlog``: an HdrHistogram interval log that the ``hdrhistogram`` package reads
back, its intervals adding up to the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from lab.measure.hlog import CORRECTED_TAG, UNCORRECTED_TAG, new_histogram
from lab.measure.samples import latency_ns
from lab.records.export import export, hlog_text
from lab.records.record import Record
from lab.units import NS_PER_MS


def read_intervals(path: Path) -> list[HdrHistogram]:
    reader = HistogramLogReader(str(path), new_histogram())
    found = []
    try:
        while (histogram := reader.get_next_interval_histogram()) is not None:
            found.append(histogram)
    finally:
        reader.input_file.close()
    return found


def by_tag(histograms: list[HdrHistogram], tag: str) -> list[HdrHistogram]:
    return [histogram for histogram in histograms if histogram.get_tag() == tag]


@pytest.mark.parametrize("interval_s", [None, 0.1])
def test_interval_counts_sum_to_the_runs_requests(open_loop_run: Record, tmp_path: Path,
                                                  interval_s: float | None) -> None:
    path = export(open_loop_run, "hlog", tmp_path / "run.hlog", interval_s=interval_s)
    histograms = read_intervals(path)
    summary = open_loop_run.summary
    assert summary.requests == summary.succeeded  # the fixture's run has no errors
    for tag in (CORRECTED_TAG, UNCORRECTED_TAG):
        tagged = by_tag(histograms, tag)
        assert sum(histogram.get_total_count() for histogram in tagged) == summary.requests
    # 0.8 s of load: one interval at a second each, about eight at 0.1 s
    corrected = by_tag(histograms, CORRECTED_TAG)
    assert len(corrected) == 1 if interval_s is None else 8 <= len(corrected) <= 10


def test_intervals_follow_the_run_in_time_and_keep_its_figures(open_loop_run: Record,
                                                               tmp_path: Path) -> None:
    histograms = read_intervals(export(open_loop_run, "hlog", tmp_path / "run.hlog", interval_s=0.1))
    corrected = by_tag(histograms, CORRECTED_TAG)
    uncorrected = by_tag(histograms, UNCORRECTED_TAG)
    starts = [histogram.get_start_time_stamp() for histogram in corrected]
    assert starts == sorted(starts)
    # absolute times: the log's StartTime is the record's, intervals 100 ms apart from it
    assert starts[0] / 1000 == pytest.approx(open_loop_run.started.timestamp(), abs=0.002)
    assert np.diff(starts) == pytest.approx(100.0, abs=1.5)
    merged = new_histogram()
    for histogram in corrected:
        merged.add(histogram)
    exact_ms = latency_ns(open_loop_run.samples) / NS_PER_MS
    # 3 significant digits: HdrHistogram's own bound on how far a recorded value may move. Its
    # percentile is the value of rank ceil(p * n), numpy's inverted_cdf ("higher" took the next
    # sample, 0.65 % away in one CI run of 800 samples)
    assert merged.get_max_value() / NS_PER_MS == pytest.approx(exact_ms.max(), rel=1e-3)
    assert merged.get_value_at_percentile(50) / NS_PER_MS == pytest.approx(
        np.percentile(exact_ms, 50, method="inverted_cdf"), rel=2e-3)
    # the responder's loop freezes 30 ms every 0.3 s: only the corrected figure carries it
    assert max(h.get_max_value() for h in corrected) >= max(h.get_max_value() for h in uncorrected)
    assert max(h.get_max_value() for h in corrected) / NS_PER_MS > 20


def test_a_closed_loop_runs_two_tags_are_the_same(closed_loop_run: Record) -> None:
    lines = [line for line in hlog_text(closed_loop_run, 0.1).splitlines() if line.startswith("Tag=")]
    corrected = [line.split(",", 1)[1] for line in lines if line.startswith(f"Tag={CORRECTED_TAG},")]
    uncorrected = [line.split(",", 1)[1] for line in lines if line.startswith(f"Tag={UNCORRECTED_TAG},")]
    assert corrected and corrected == uncorrected


def test_an_interval_that_is_not_positive_is_refused(open_loop_run: Record) -> None:
    with pytest.raises(Exception, match="must be a positive number of seconds"):
        hlog_text(open_loop_run, 0.0)

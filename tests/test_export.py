"""Exports: one row per request (or the right percentile rows), figures that match the summary."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lab.measure.hgrm import bucket_layout, format_hgrm, percentile_distribution
from lab.measure.run import RunOutcome
from lab.measure.samples import latency_ns
from lab.measure.stats import summarize
from lab.records.export import (
    export,
    read_csv,
    read_parquet,
    samples_from_dataframe,
    summary_document,
    to_dataframe,
)
from lab.records.record import Record

# A wrk2 row: "%12.3f %12f %12d %12.2f"
HGRM_ROW = re.compile(r"^ {0,11}\d+\.\d{3} {1,12}[01]\.\d{6} {1,12}\d+ {1,12}(?:\d+\.\d{2}|inf)$")
HGRM_HEADER = "       Value   Percentile   TotalCount 1/(1-Percentile)"


def test_dataframe_has_one_row_per_request_and_rebuilds_the_samples(synthetic_record: Record) -> None:
    frame = to_dataframe(synthetic_record)
    assert len(frame) == synthetic_record.summary.requests
    assert frame["intended_ns"].dtype == "Int64"
    assert frame["error"].value_counts()["timeout"] == synthetic_record.summary.errors["timeout"]
    assert frame["connect_ns"].isna().sum() == (synthetic_record.samples["connect_ns"] == -1).sum()
    rebuilt = samples_from_dataframe(frame)
    assert rebuilt.tobytes() == synthetic_record.samples.tobytes()


@pytest.mark.parametrize("format", ["csv", "parquet"])
def test_per_request_exports_match_the_summary(format: str, tmp_path: Path, open_loop_run: Record) -> None:
    path = export(open_loop_run, format, tmp_path / f"run.{format}")
    frame = read_csv(path) if format == "csv" else read_parquet(path)[0]
    assert len(frame) == open_loop_run.summary.requests
    assert samples_from_dataframe(frame).tobytes() == open_loop_run.samples.tobytes()
    latency = frame["latency_ms"].dropna()
    summary = open_loop_run.summary
    assert len(latency) == summary.succeeded
    assert latency.mean() == pytest.approx(summary.latency.mean)
    assert latency.max() == pytest.approx(summary.latency.max)
    assert np.percentile(latency, 99, method="higher") == pytest.approx(summary.latency.p99)
    uncorrected = frame["uncorrected_latency_ms"].dropna()
    assert summary.uncorrected is not None
    assert uncorrected.mean() == pytest.approx(summary.uncorrected.mean)


def test_parquet_carries_the_record_summary(tmp_path: Path, synthetic_record: Record) -> None:
    _, stored = read_parquet(export(synthetic_record, "parquet", tmp_path / "run.parquet"))
    assert stored == json.loads(json.dumps(summary_document(synthetic_record)))


def test_json_summary_has_the_full_configuration_and_the_figures(tmp_path: Path,
                                                                 open_loop_run: Record) -> None:
    document = json.loads(export(open_loop_run, "json", tmp_path / "run.json").read_text())
    assert document["load_spec"] == open_loop_run.load_spec
    assert document["server_config"] == open_loop_run.server_config
    assert document["environment"]["python"] == open_loop_run.environment.python
    # 800 requests: p99 has 8 beyond it and is shown; p99.9 and p99.99 are null and listed
    assert open_loop_run.summary.latency.count == 800
    # the figures where bench --json and show --json print them: one shape for every script
    assert document["latency_ms"]["p99"] == open_loop_run.summary.latency.p99
    assert document["latency_ms"]["p99_9"] is None
    assert {"latency_ms.p99_9", "latency_ms.p99_99", "ttfb_ms.p99_99"} <= set(
        document["unsupported_percentiles"])
    assert {key: document[key] for key in open_loop_run.to_json_dict()} == open_loop_run.to_json_dict()
    # and, for scripts written against version 1, the summary where it was
    assert document["summary"]["latency"]["p99"] == open_loop_run.summary.latency.p99
    assert document["summary"]["latency"]["p99_9"] is None
    assert {"latency.p99_9", "latency.p99_99", "ttfb.p99_99"} <= set(
        document["summary_unsupported_percentiles"])
    nulled = json.loads(json.dumps(open_loop_run.summary.as_dict()))
    for path in document["summary_unsupported_percentiles"]:
        *parents, key = path.split(".")
        place = nulled
        for parent in parents:
            place = place[parent]
        place[key] = None
    assert document["summary"] == nulled  # the rest as the record has it
    rows = document["timeline"]["rows"]
    assert sum(row["requests"] for row in rows) == open_loop_run.summary.requests


def test_hgrm_has_wrk2s_layout_and_footer(tmp_path: Path, open_loop_run: Record) -> None:
    text = export(open_loop_run, "hgrm", tmp_path / "run.hgrm").read_text()
    lines = text.splitlines()
    assert lines[0] == HGRM_HEADER
    assert lines[1] == ""
    rows = lines[2:-3]
    assert rows and all(HGRM_ROW.match(row) for row in rows), [r for r in rows if not HGRM_ROW.match(r)]
    assert rows[-1].split()[1:] == ["1.000000", str(open_loop_run.summary.succeeded), "inf"]
    footer = lines[-3:]
    summary = open_loop_run.summary.latency
    assert footer[0] == f"#[Mean    = {summary.mean:12.3f}, StdDeviation   = {summary.stdev:12.3f}]"
    assert footer[1] == f"#[Max     = {summary.max:12.3f}, Total count    = {summary.count:12d}]"
    assert footer[2] == f"#[Buckets = {27:12d}, SubBuckets     = {2048:12d}]"  # wrk2's layout


def test_hgrm_percentile_rows_follow_hdrhistograms_halving_ticks() -> None:
    values = np.arange(1, 100_001, dtype=np.int64) * 1000  # 1 us .. 100 ms, evenly
    rows = percentile_distribution(values)
    levels = [row.percentile for row in rows]
    # 5 ticks per half-distance: steps of 10 % up to 50 %, 5 % to 75 %, 2.5 % to 87.5 %, ...
    assert levels[:12] == pytest.approx([0, 10, 20, 30, 40, 50, 55, 60, 65, 70, 75, 77.5])
    assert levels[-1] == 100.0
    assert all(b > a for a, b in itertools.pairwise(levels))
    for row in rows:
        # Exact samples: the value is the smallest sample that reaches the level, and the count
        # is exactly how many samples are at or below it.
        assert row.total_count == np.count_nonzero(values <= row.value_ns)
        assert row.total_count / values.size * 100 >= row.percentile - 1e-9
    assert rows[0].value_ns == values.min() and rows[-1].value_ns == values.max()


def test_hgrm_rows_match_the_exact_percentiles_of_a_real_run(open_loop_run: Record) -> None:
    latencies = latency_ns(open_loop_run.samples)
    ordered = np.sort(latencies)
    for row in percentile_distribution(latencies):
        rank = max(1, math.ceil(row.percentile / 100 * ordered.size - 1e-9))
        assert row.value_ns == ordered[rank - 1]


def test_hgrm_of_uncorrected_latency_and_ttfb(open_loop_run: Record, tmp_path: Path) -> None:
    for metric, summary in (("uncorrected", open_loop_run.summary.uncorrected),
                            ("ttfb", open_loop_run.summary.ttfb)):
        assert summary is not None
        text = export(open_loop_run, "hgrm", tmp_path / f"{metric}.hgrm", metric=metric).read_text()
        assert f"Max     = {summary.max:12.3f}" in text


def test_bucket_layout_grows_past_wrk2s_day_long_range() -> None:
    assert bucket_layout(1_000) == (27, 2048)
    assert bucket_layout(10 * 24 * 3600 * 1e6)[0] > 27


def test_an_empty_distribution_still_has_header_and_footer() -> None:
    text = format_hgrm(np.array([], dtype=np.int64))
    assert text.startswith(HGRM_HEADER)
    assert "Total count    =            0" in text


def test_summary_of_csv_latency_equals_the_records(tmp_path: Path, closed_loop_run: Record) -> None:
    frame = pd.read_csv(export(closed_loop_run, "csv", tmp_path / "closed.csv"))
    assert len(frame) == closed_loop_run.summary.requests
    recomputed = summarize((frame["done_ns"] - frame["sent_ns"]).to_numpy()[frame["error"] == "none"])
    assert recomputed == closed_loop_run.summary.latency


def test_export_refuses_an_unknown_format(synthetic_record: Record, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format: 'xlsx' is not allowed"):
        export(synthetic_record, "xlsx", tmp_path / "x.xlsx")


@pytest.mark.parametrize("format", ["csv", "parquet"])
def test_rows_say_when_each_request_started(format: str, tmp_path: Path, synthetic_record: Record) -> None:
    """The *_ns columns are of the monotonic clock: each row also carries its start in seconds
    since the run's start and on the wall clock, so a spreadsheet can place it in time."""
    path = export(synthetic_record, format, tmp_path / f"run.{format}")
    frame = read_csv(path) if format == "csv" else read_parquet(path)[0]
    samples = synthetic_record.samples
    first = int(samples["intended_ns"].min())  # an open-loop request starts when it was due
    assert frame["start_s"].to_numpy() == pytest.approx((samples["intended_ns"] - first) / 1e9)
    assert frame["start_s"].iloc[0] == 0
    started = pd.Timestamp(synthetic_record.environment.started_at)
    assert frame["start_utc"].iloc[0] == started
    # to the microsecond a CSV keeps: 5000 requests at 5000/s end a second after the start
    offset = frame["start_utc"].iloc[-1] - started
    assert offset == pd.Timedelta(microseconds=round(frame["start_s"].iloc[-1] * 1e6))
    assert offset > pd.Timedelta(seconds=0.99)


def test_the_run_start_of_a_generator_run_is_before_its_warm_up(synthetic_record: Record) -> None:
    """A run saved by bench named its start where the load began, the warm-up's start: its
    measured requests (the record's) start half a second into the run after a 0.5 s warm-up."""
    first = int(synthetic_record.samples["intended_ns"].min())
    warmed = Record.create(samples=synthetic_record.samples, load_spec={"mode": "open", "rate": 5000,
                                                                       "warmup_seconds": 0.5},
                           outcome=RunOutcome(window_ns=(first, first + 10**9)), name="warmed")
    frame = to_dataframe(warmed)
    assert frame["start_s"].iloc[0] == pytest.approx(0.5)
    assert frame["start_utc"].iloc[0] == (pd.Timestamp(warmed.environment.started_at)
                                          + pd.Timedelta(seconds=0.5))

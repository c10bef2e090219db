"""A percentile that fewer than a handful of samples lie beyond is marked in every view, never
shown as the max under its name (the rule: lab.measure.figures.MIN_SAMPLES_BEYOND)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import synthetic_samples

from lab.cli.records import describe
from lab.measure import figures
from lab.measure.report import format_ms, format_run, last_run_table
from lab.notebook.teaching import figures as teaching_table
from lab.records.compare import compare, comparison_view
from lab.records.export import export, hgrm_text
from lab.records.record import Record
from lab.records.store import RecordStore

# The quickstart's Nagle run had 68 requests: its p99.9 and p99.99 were both its max.
SHORT = 68


@pytest.fixture
def short_run() -> Record:
    samples = synthetic_samples(SHORT, error_every=SHORT + 1)  # every request answered
    return Record.create(samples=samples, name="short", load_spec={
        "mode": "open", "rate": 5000, "connections": 1, "url": "http://127.0.0.1:1/fast"})


@pytest.fixture
def long_run() -> Record:
    return Record.create(samples=synthetic_samples(20_000, error_every=20_001), name="long",
                         load_spec={"mode": "open", "rate": 5000, "connections": 1})


def test_the_rule_is_five_samples_beyond():
    assert figures.MIN_SAMPLES_BEYOND == 5
    assert figures.samples_needed(99) == 500 and figures.samples_needed(99.99) == 50_000
    assert figures.supported(99, 500) and not figures.supported(99, 499)
    assert figures.supported(50, 10) and not figures.supported(50, 9)
    assert figures.unsupported_keys(SHORT) == ["p95", "p99", "p99_9", "p99_99"]
    assert figures.unsupported_keys(0) == []  # nothing measured: missing, not unsupported


def test_bench_and_show_text_mark_it(short_run: Record):
    latency = short_run.summary.latency
    assert latency.count == SHORT and latency.p99_99 == latency.max  # what was shown before
    text = format_run(short_run.summary, short_run.load_spec, short_run.run_outcome())
    row = next(line for line in text.splitlines() if line.strip().startswith("99.99%"))
    assert figures.UNSUPPORTED in row and format_ms(latency.max) not in row, row
    assert f"fewer than 5 of the {SHORT} samples" in text
    p90 = next(line for line in text.splitlines() if line.strip().startswith("90%"))
    assert format_ms(latency.p90) in p90  # a percentile the run does support is shown
    shown = describe(short_run)
    row = next(line for line in shown.splitlines() if line.startswith("p99.99 ms"))
    assert row.split()[2:] == [figures.UNSUPPORTED.split()[0], figures.UNSUPPORTED.split()[1]] * 4
    assert "samples needed: p95 100, p99 500, p99.9 5,000, p99.99 50,000" in shown


def test_json_nulls_it_and_lists_it(short_run: Record, long_run: Record, tmp_path: Path):
    document = short_run.to_json_dict()  # what bench --json printed and show --json prints
    assert document["latency_ms"]["p99_99"] is None and document["latency_ms"]["max"] is not None
    assert document["latency_ms"]["p90"] == short_run.summary.latency.p90
    assert {"latency_ms.p99_99", "latency_ms.p99_9", "latency_uncorrected_ms.p99_99",
            "ttfb_ms.p99_99", "status_latency_ms.200.p99_99"} <= set(document["unsupported_percentiles"])
    # 20,000 requests support p99.9, not p99.99; its 200 new connections support p95, not p99
    assert long_run.to_json_dict()["unsupported_percentiles"] == [
        "latency_ms.p99_99", "ttfb_ms.p99_99", "connect_ms.p99", "connect_ms.p99_9",
        "connect_ms.p99_99", "status_latency_ms.200.p99_99", "latency_uncorrected_ms.p99_99",
        "send_lag_ms.p99_99"]
    exported = json.loads(export(short_run, "json", tmp_path / "short.json").read_text())
    assert exported["latency_ms"]["p99_99"] is None and exported["summary"]["latency"]["p99_99"] is None
    assert "latency_ms.p99_99" in exported["unsupported_percentiles"]
    assert "latency.p99_99" in exported["summary_unsupported_percentiles"]


def test_tables_mark_it(short_run: Record, long_run: Record, tmp_path: Path):
    panel = last_run_table(short_run.summary)
    assert set(panel.loc["p99.9 ms"]) == {figures.UNSUPPORTED}
    notebook = teaching_table([short_run], uncorrected=False)
    assert notebook.loc["short", "p99.9 ms"] == figures.UNSUPPORTED
    assert notebook.loc["short", "p50 ms"] == round(short_run.summary.latency.p50, 3)
    side_by_side = compare([long_run, short_run])
    assert side_by_side.loc["p99.99 ms", "short"] == figures.UNSUPPORTED
    assert side_by_side.loc["p99.9 ms", "long"] == long_run.summary.latency.p99_9
    assert side_by_side.loc["p99.9 ms", "short ÷ long"] != side_by_side.loc["p99.9 ms", "short ÷ long"]  # NaN
    view = comparison_view([long_run, short_run])
    assert view.table.loc["p99.9 ms", "short"] == figures.UNSUPPORTED
    assert any(f"of the {SHORT} samples" in note for note in view.notes)
    store = RecordStore(tmp_path)
    store.save(short_run)
    listing = store.runs().iloc[0]
    assert listing["p99_9_ms"] == figures.UNSUPPORTED and listing["p99_ms"] == figures.UNSUPPORTED


def test_exports_show_no_tail_the_samples_do_not_have(short_run: Record, tmp_path: Path):
    # .hgrm is a spectrum of samples with their counts: its rows stop at the max (100 %),
    # with no row in between that would name a p99.99 of 68 requests.
    rows = [line.split() for line in hgrm_text(short_run).splitlines()[2:] if line and line[0] != "#"]
    fractions = [float(row[1]) for row in rows]
    assert fractions[-1] == 1.0 and all(f < 1 - 1 / SHORT for f in fractions[:-2])
    csv = export(short_run, "csv", tmp_path / "short.csv").read_text().splitlines()[0]
    assert "p99" not in csv  # one row per request: no percentile to mislabel


def test_sweep_and_capacity_json_null_it_too(short_run: Record):
    from lab.experiments.capacity import Probe
    from lab.experiments.sweeps import SweepRun

    probe = Probe(rate=100.0, passed=True, why="held", summary=short_run.summary).as_dict()
    round_run = SweepRun(round=0, position=0, setting={"nodelay": True}, record_id="x",
                         summary=short_run.summary).as_dict()
    for document in (probe, round_run):
        assert document["latency_ms"]["count"] == SHORT
        assert document["latency_ms"]["p99_99"] is None and document["latency_ms"]["p90"] is not None
        assert "latency_ms.p99_99" in document["unsupported_percentiles"]


def test_timelines_mark_an_intervals_percentile_its_requests_cannot_support(
        short_run: Record, long_run: Record, tmp_path: Path):
    from lab.measure.report import timeline_view

    view = timeline_view(long_run.timeline(0.05))  # about 250 requests an interval
    assert set(view["p99_ms"]) == {figures.UNSUPPORTED}  # p99 needs 500
    assert figures.UNSUPPORTED not in set(view["p50_ms"])
    assert long_run.timeline(0.05)["p99_ms"].notna().all()  # the plots still draw the values
    rows = json.loads(export(short_run, "json", tmp_path / "short.json").read_text())["timeline"]["rows"]
    assert rows and all(row["p99_ms"] is None for row in rows)
    assert all(row["max_ms"] is not None for row in rows if row["requests"])

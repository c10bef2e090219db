"""Records: built from plain parts, summarised exactly, saved and loaded back unchanged."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest
from conftest import SESSION_STARTED, synthetic_samples

from lab.http.config import ServerConfig
from lab.measure.samples import ErrorKind, latency_ns
from lab.measure.stats import summarize
from lab.records.compare import compare_runs
from lab.records.record import Record, looks_like_record_id
from lab.records.store import RecordNotFound, RecordStore, save_run, set_data_dir


def test_a_record_saved_and_loaded_back_is_equal_in_every_field(
        store: RecordStore, open_loop_run: Record) -> None:
    store.save(open_loop_run)
    loaded = store.load(open_loop_run.id)
    assert loaded == open_loop_run
    for field in dataclasses.fields(Record):
        before, after = getattr(open_loop_run, field.name), getattr(loaded, field.name)
        if field.name == "samples":
            assert after.dtype == before.dtype
            assert np.array_equal(after, before)
        else:
            assert after == before, field.name
    assert loaded.summary.as_dict() == open_loop_run.summary.as_dict()
    assert loaded.timeline().equals(open_loop_run.timeline())


def test_a_config_dataclass_is_stored_as_its_plain_dict(store: RecordStore) -> None:
    config = ServerConfig(nodelay=False, linger_seconds=0)
    record = Record.create(samples=synthetic_samples(100), load_spec={"mode": "closed", "weights": (1, 2)},
                           server_config=config, name="dataclass")
    assert record.server_config is not None
    assert record.server_config["nodelay"] is False
    assert record.load_spec["weights"] == [1, 2]  # as JSON keeps it, so a reload compares equal
    store.save(record)
    assert store.load("dataclass") == record


def test_samples_in_another_format_are_refused() -> None:
    with pytest.raises(TypeError, match="SAMPLE_DTYPE"):
        Record.create(samples=np.zeros(3), load_spec={}, name="x")


def test_a_record_cannot_change_its_samples(synthetic_record: Record) -> None:
    with pytest.raises(ValueError):
        synthetic_record.samples["done_ns"][0] = 0


def test_the_environment_is_captured(closed_loop_run: Record) -> None:
    environment = closed_loop_run.environment
    assert environment.python.count(".") == 2
    assert environment.uvloop and environment.httptools and environment.lab
    assert environment.event_loop == "asyncio"
    assert environment.kernel and environment.cpu_count and environment.cpu_count >= 1
    assert environment.git_commit is None or len(environment.git_commit) == 40
    # Made by a session fixture: some time in this session, which may have run for many minutes.
    assert SESSION_STARTED <= environment.started <= dt.datetime.now(dt.UTC)
    assert looks_like_record_id(closed_loop_run.id)


def test_open_loop_summary_has_corrected_and_uncorrected_latency(open_loop_run: Record) -> None:
    summary = open_loop_run.summary
    assert summary.open_loop
    assert summary.uncorrected is not None
    assert summary.requests == open_loop_run.samples.size == 800
    # The responder froze for 30 ms: requests scheduled during the freeze waited for it, which
    # only the corrected figure (timed from the intended send) charges to them.
    assert summary.latency.p99_9 >= summary.uncorrected.p99_9
    assert summary.latency.max > 20
    assert summary.latency == summarize(latency_ns(open_loop_run.samples, corrected=True))
    assert summary.uncorrected == summarize(latency_ns(open_loop_run.samples, corrected=False))
    assert summary.ttfb.count == summary.succeeded


def test_closed_loop_summary_has_one_latency_and_connect_times(closed_loop_run: Record) -> None:
    summary = closed_loop_run.summary
    assert not summary.open_loop and summary.uncorrected is None
    assert summary.errors == {}
    assert summary.connect.count == 2  # one connect per connection, reused afterwards
    assert summary.rps > 100
    assert set(summary.share_under) == {"1", "2", "5", "10"}


def test_errors_are_counted_by_kind_and_share_under_a_threshold() -> None:
    samples = synthetic_samples(1000, error_every=100)
    samples["error"][0] = ErrorKind.RESET
    record = Record.create(samples=samples, load_spec={}, name="errors", thresholds_ms=(0.2,))
    assert record.summary.errors == {"reset": 1, "timeout": 10}
    assert record.summary.succeeded == 989
    latencies = latency_ns(samples)
    assert record.summary.share_under["0.2"] == pytest.approx(np.mean(latencies < 200_000))


def test_timeline_accounts_for_every_request(open_loop_run: Record) -> None:
    timeline = open_loop_run.timeline()
    assert timeline["requests"].sum() == open_loop_run.summary.requests
    assert (timeline["requests_per_s"] >= 0).all() and timeline["requests_per_s"].mean() > 0
    assert timeline["p99_ms"].max() == pytest.approx(open_loop_run.summary.latency.max, rel=0.5)
    assert timeline["max_ms"].max() == pytest.approx(open_loop_run.summary.latency.max)
    fine = open_loop_run.timeline(0.1)
    assert fine["start_s"].tolist()[:3] == pytest.approx([0.0, 0.1, 0.2])
    assert fine["requests"].sum() == open_loop_run.summary.requests


def test_load_by_id_prefix_name_or_latest(store: RecordStore) -> None:
    first = Record.create(samples=synthetic_samples(50), load_spec={"rate": 1}, name="same",
                          started_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    second = Record.create(samples=synthetic_samples(60), load_spec={"rate": 2}, name="same",
                           started_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    store.save(second)
    store.save(first)
    assert store.load(first.id) == first
    assert store.load(first.id[:10]) == first  # "20250101-0": a unique prefix
    assert store.load("same") == second  # a repeated name means its newest run
    assert store.load("latest") == second
    with pytest.raises(RecordNotFound, match="no record"):
        store.load("other")
    with pytest.raises(RecordNotFound, match="several"):
        store.load("2025")


def test_rename_and_notes_rewrite_only_the_metadata(store: RecordStore, synthetic_record: Record) -> None:
    path = store.save(synthetic_record)
    samples_before = (path / "samples.npy").stat().st_mtime_ns
    store.update(synthetic_record.id, name="renamed", notes="second thoughts", tags=["a", "b"])
    loaded = store.load("renamed")
    assert (loaded.name, loaded.notes, loaded.tags) == ("renamed", "second thoughts", ("a", "b"))
    assert np.array_equal(loaded.samples, synthetic_record.samples)
    assert (path / "samples.npy").stat().st_mtime_ns == samples_before
    store.delete("renamed")
    assert store.runs().empty


def test_runs_lists_one_row_per_run_with_settings_and_figures(
        store: RecordStore, open_loop_run: Record, closed_loop_run: Record) -> None:
    store.save(open_loop_run)
    store.save(closed_loop_run)
    table = store.runs()
    assert table["id"].tolist() == sorted([open_loop_run.id, closed_loop_run.id],
                                          key=lambda i: store.load(i).started)
    assert {"name", "started", "mode", "connections", "requests", "p99_ms", "rps"} <= set(table)
    row = table.set_index("name").loc["closed"]
    assert row["requests"] == closed_loop_run.summary.requests
    assert row["p99_ms"] == closed_loop_run.summary.latency.p99


def test_compare_shows_differing_settings_and_ratios(store: RecordStore, open_loop_run: Record,
                                                     closed_loop_run: Record) -> None:
    store.save(open_loop_run)
    store.save(closed_loop_run)
    table = compare_runs(store, ["closed", "open-stall"])
    assert "load.mode" in table.index and "load.connections" in table.index
    assert "load.url" not in table.index  # the same in both: not a difference
    ratio = table.loc["p99 ms", "open-stall ÷ closed"]
    assert ratio == pytest.approx(open_loop_run.summary.latency.p99 / closed_loop_run.summary.latency.p99)
    by_baseline = compare_runs(store, ["closed", "open-stall"], baseline="open-stall")
    assert "closed ÷ open-stall" in by_baseline.columns


def test_save_run_is_one_call_into_the_default_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path / "from-env"))
    record = save_run(samples=synthetic_samples(20), load_spec={"mode": "closed"}, name="one-call")
    assert (tmp_path / "from-env" / record.id / "record.json").exists()
    set_data_dir(tmp_path / "from-code")
    try:
        save_run(samples=synthetic_samples(20), load_spec={}, name="override")
        assert RecordStore().load("override").name == "override"
    finally:
        set_data_dir(None)
    metadata = json.loads((tmp_path / "from-env" / record.id / "record.json").read_text())
    assert metadata["load_spec"] == {"mode": "closed"}

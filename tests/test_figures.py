"""The catalogue of figures: one list of percentiles, and every view of a run renders from it.

The test that matters adds a percentile (p99.999) to the one list, as a future change would,
and finds it in every view of a real run -- bench's text and JSON, ``show``, ``compare``, the
panel's table, a new record -- with no other change. Old records still load: a cached summary
without the new percentile, or with one the lab no longer lists.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from collections.abc import Iterator

import pytest
from conftest import synthetic_samples

from lab.cli import main
from lab.engine.report import format_report
from lab.engine.spec import LoadSpec
from lab.loadgen import run_load
from lab.measure import figures
from lab.measure.stats import PERCENTILES, LatencySummary, summarize
from lab.measure.summary import RunSummary
from lab.measure.thresholds import check_thresholds
from lab.notebook.panel import summary_table
from lab.records.compare import compare, comparison_view
from lab.records.experiment import record_from_result
from lab.records.record import Record
from lab.records.store import RecordStore, StoreWarning
from lab.server import ServerHandle, start_server

ADDED_KEY, ADDED_PERCENT, ADDED_LABEL = "p99_999", 99.999, "p99.999"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with start_server() as handle:
        yield handle


@pytest.fixture
def added_percentile(monkeypatch: pytest.MonkeyPatch) -> None:
    """p99.999 added to the one list, for the test only."""
    monkeypatch.setitem(figures.PERCENTILES, ADDED_KEY, ADDED_PERCENT)


def test_the_keys_follow_one_rule_and_stats_shares_the_list() -> None:
    assert PERCENTILES is figures.PERCENTILES
    assert all(key == figures.percentile_key(percent) for key, percent in PERCENTILES.items())
    assert [figure.label for figure in figures.percentiles()] == [
        "p50", "p90", "p95", "p99", "p99.9", "p99.99"]
    assert figures.percentile("p99_9").heading == "p99.9 ms"
    assert figures.percentile("p99_9").column == "p99_9_ms"
    assert figures.percentile("p99").of("ttfb", "ttfb").heading == "ttfb p99 ms"


def test_a_latency_summary_has_each_listed_percentile() -> None:
    samples = synthetic_samples(1000)
    summary = summarize(samples["done_ns"] - samples["sent_ns"])
    assert list(summary.as_dict()) == ["count", "mean", "stdev", "min", "max", *PERCENTILES]
    assert summary.p50 <= summary.p99_99 <= summary.max
    assert repr(summary).startswith("LatencySummary(count=1000, mean=") and "p99_9=" in repr(summary)
    assert "p99_9" in dir(summary)  # offered by a notebook's tab completion
    assert pickle.loads(pickle.dumps(summary)) == summary  # a cluster's results cross processes
    with pytest.raises(AttributeError, match="p42"):
        summary.p42  # noqa: B018


@pytest.mark.usefixtures("added_percentile")
def test_an_added_percentile_shows_in_every_view(server: ServerHandle, tmp_path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    url = server.url + "/fast"
    assert main(["bench", url, "-c", "2", "-d", "0.2"]) == 0
    assert "99.999%" in capsys.readouterr().out  # bench's text, laid out as wrk's
    assert main(["bench", url, "-c", "2", "-d", "0.2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    # p99.999 needs 500,000 requests: listed in the JSON, null and said to be unsupported
    assert ADDED_KEY in printed["latency_ms"] and printed["latency_ms"][ADDED_KEY] is None
    assert f"latency_ms.{ADDED_KEY}" in printed["unsupported_percentiles"]
    assert ADDED_KEY in printed["ttfb_ms"] and ADDED_KEY in printed["status_latency_ms"]["200"]

    result = run_load(LoadSpec(url=url, connections=2, duration_seconds=0.2))
    assert "99.999%" in format_report(result)
    assert ADDED_KEY in result.to_json_dict()["latency_ms"]
    panel_table = summary_table(result)
    assert f"{ADDED_LABEL} ms" in panel_table.index

    store = RecordStore(tmp_path)
    record = record_from_result(result, name="added")
    store.save(record)
    saved = json.loads((tmp_path / record.id / "record.json").read_text())
    assert saved["summary"]["latency"][ADDED_KEY] == record.summary.latency.p99_999
    assert store.runs().loc[0, "requests"] == result.summary.requests
    assert main(["show", "added", "--data-dir", str(tmp_path)]) == 0
    assert f"{ADDED_LABEL} ms" in capsys.readouterr().out
    assert main(["show", "added", "--json", "--data-dir", str(tmp_path)]) == 0
    assert ADDED_KEY in json.loads(capsys.readouterr().out)["latency_ms"]

    other = Record.create(samples=synthetic_samples(500), load_spec={"mode": "closed"}, name="other")
    table = compare([store.load("added"), other])
    assert table.loc[f"{ADDED_LABEL} ms", "added"] == figures.UNSUPPORTED  # a short run's
    assert f"{ADDED_LABEL} ms" in comparison_view([record, other]).table.index
    assert main(["compare", "added", "--data-dir", str(tmp_path)]) == 0
    assert f"{ADDED_LABEL} ms" in capsys.readouterr().out
    (check,) = check_thresholds([f"{ADDED_LABEL}<10s"], result.summary)  # a threshold names it too
    assert check.held and check.measured == pytest.approx(result.summary.latency.p99_999 / 1000)  # in s


def test_a_record_saved_before_a_percentile_was_added_still_lists(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RecordStore(tmp_path)
    store.save(Record.create(samples=synthetic_samples(200), load_spec={}, name="old"))
    monkeypatch.setitem(figures.PERCENTILES, ADDED_KEY, ADDED_PERCENT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        (info,) = store.infos()
    # The cached summary did not have it: the listing summarizes the samples anew, so it
    # shows what a loaded record does (one set of figures, issue 23).
    assert not math.isnan(info.summary.latency.p99_999)
    assert info.summary.as_dict() == store.load("old").summary.as_dict()


def test_a_percentile_no_longer_listed_is_left_out_of_a_saved_summary(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(figures.PERCENTILES, ADDED_KEY, ADDED_PERCENT)
    saved = Record.create(samples=synthetic_samples(200), load_spec={}, name="newer").summary.as_dict()
    monkeypatch.delitem(figures.PERCENTILES, ADDED_KEY)
    summary = RunSummary.from_dict(saved)
    assert ADDED_KEY not in summary.latency.as_dict()
    assert isinstance(summary.latency, LatencySummary) and summary.latency.count == 200

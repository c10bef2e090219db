"""The notebooks' shared helpers: a run as a record, and the compact table of figures."""

from __future__ import annotations

from lab.loadgen import LoadSpec, run_load
from lab.records import Record
from lab.teaching import as_record, figures


def test_a_run_becomes_a_record_of_its_measured_part(server):
    result = run_load(LoadSpec(url=server.url + "/fast", connections=2, duration_seconds=0.3,
                               warmup_seconds=0.1))
    record = as_record(result, name="closed", server_config=server.config)
    assert record.samples.size == result.requests
    assert record.load_spec["connections"] == 2
    assert record.server_config["nodelay"] is True
    table = figures([record])
    assert list(table.index) == ["closed"]
    assert table.loc["closed", "errors"] == 0
    assert table.loc["closed", "p50 ms"] <= table.loc["closed", "p99 ms"] <= table.loc["closed", "max ms"]


def test_open_loop_records_get_an_uncorrected_row(synthetic_record: Record):
    table = figures([synthetic_record])
    assert list(table.index) == ["synthetic", "synthetic, uncorrected"]
    assert list(figures([synthetic_record], uncorrected=False).index) == ["synthetic"]
    assert {"requests/s", "p90 ms", "p99.9 ms", "max ms"} <= set(table.columns)

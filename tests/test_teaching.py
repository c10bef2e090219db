"""The notebooks' shared helpers: a run as a record, and the compact table of figures."""

from __future__ import annotations

from lab.loadgen import LoadSpec, run_load
from lab.notebook.teaching import figures
from lab.records.experiment import record_from_result
from lab.records.record import Record


def test_a_run_becomes_a_record_of_its_measured_part(server):
    result = run_load(LoadSpec(url=server.url + "/fast", connections=2, duration_seconds=0.3,
                               warmup_seconds=0.1))
    record = record_from_result(result, name="closed", server_config=server.config)
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


def test_a_load_sweep_point_and_its_figure(server):
    import pandas as pd

    from lab.notebook.teaching import load_latency_figure, load_point

    result = run_load(LoadSpec(url=server.url + "/fast", mode="open", rate=200, connections=2,
                               duration_seconds=0.5))
    point = load_point(result, capacity=400)
    assert point["offered load"] == 0.5
    assert 150 <= point["throughput req/s"] <= 250
    assert point["in flight (counted)"] > 0
    assert 0 < point["busy (measured ρ)"] < 0.9  # half the capacity asked for, not more
    # a constant rate aims at 0; a busy machine bunches the sends, so only its being measured
    # is certain here
    assert 0 <= point["arrival cv² (measured)"] < float("inf")
    figure = load_latency_figure(pd.DataFrame([point]), service_ms=2.5)
    assert len(figure.axes) == 2


def test_cpu_seconds_of_this_process_and_of_a_gone_one():
    import os

    from lab.notebook.teaching import cpu_seconds

    before = cpu_seconds([os.getpid()])
    sum(range(3_000_000))  # some work of ours
    after = cpu_seconds([os.getpid()])
    assert before is not None and after is not None and after > before
    assert cpu_seconds([2**22 + 12345]) is None  # beyond pid_max: no such process


def test_a_load_with_the_cpu_of_each_side(make_server):
    import asyncio

    from lab.notebook.teaching import load_with_cpu

    server = make_server(isolation="process")
    spec = LoadSpec(url=server.url + "/fast", connections=10, duration_seconds=1.0)
    result, shares = asyncio.run(load_with_cpu(spec, server.pids))
    assert result.requests > 0
    # both sides did real work while the run lasted; neither can use more than its cores
    assert 0.05 < shares.server <= 1.1 and 0.05 < shares.generator <= 1.1 * spec.workers
    assert shares.server + shares.generator <= shares.machine * 1.1 + 0.1 <= shares.cores * 1.1 + 0.1
    assert shares.saturated()

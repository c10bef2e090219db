"""The seed article's figures and ours side by side, in its format, each with its source."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.loadgen import LoadSpec, run_load
from lab.measure.summary import metric_ns
from lab.notebook.article import (
    AB_1000,
    COLUMNS,
    SEED_FIGURES,
    SEED_SOURCES,
    UNDER,
    WITHIN_STDEV,
    WRK_360,
    article_figures,
    article_table,
    seed_provenance,
    share_within_one_stdev,
)


def test_a_run_in_the_article_format_next_to_the_article(server):
    result = run_load(LoadSpec(url=server.url + "/fast", connections=4, duration_seconds=0.3))
    figures = article_figures(result)
    assert set(figures) == set(COLUMNS)
    assert 0 <= figures[UNDER] <= 100
    latencies = metric_ns(result.measured_samples(), "latency")
    assert figures[WITHIN_STDEV] == pytest.approx(100 * share_within_one_stdev(latencies))
    assert figures["p50 ms"] <= figures["p95 ms"] <= figures["p99 ms"] <= figures["max ms"]
    table = article_table({"4 connections": result}, seed_rows={"4 connections": WRK_360})
    assert list(table.index) == ["this machine: 4 connections", f"article: {WRK_360}"]
    assert math.isnan(table.loc[f"article: {WRK_360}", "p50 ms"])
    assert all(set(row) <= set(COLUMNS) for row in SEED_FIGURES.values())


def test_the_articles_99_57_percent_is_wrks_within_one_stdev_column_not_a_share_under_2_ms():
    """wrk's ``Latency 1.46ms 7.74ms 230.59ms 99.57%``: the last column is ``+/- Stdev``."""
    row = SEED_FIGURES[WRK_360]
    assert row[WITHIN_STDEV] == 99.57
    assert UNDER not in row  # wrk prints no share under 2 ms; the article's table has none
    assert "+/- Stdev" in SEED_SOURCES[WRK_360][WITHIN_STDEV]


def test_within_one_stdev_is_not_a_share_under_a_threshold():
    """Four answers of 3 ms and one of 30 ms: mean 8.4, stdev 10.8, so all but the 30 ms one
    lie within one stdev (80 %), while none is under 2 ms."""
    latencies_ns = np.array([3, 3, 3, 3, 30]) * 1_000_000
    assert share_within_one_stdev(latencies_ns) == pytest.approx(0.8)
    assert np.count_nonzero(latencies_ns < 2_000_000) == 0
    assert math.isnan(share_within_one_stdev(np.array([], dtype=np.int64)))


def test_every_seed_figure_says_where_it_comes_from():
    provenance = seed_provenance()
    for experiment, figures in SEED_FIGURES.items():
        for figure in figures:
            source = provenance.loc[(experiment, figure), "source"]
            assert source.startswith("quoted"), (experiment, figure, source)
    derived = provenance.loc[(WRK_360, "requests/s")]
    assert derived["value"] == pytest.approx(360 / 1.46e-3)  # 246,575: Little's law backwards
    assert derived["source"].startswith("computed by the lab")
    assert "concurrency × elapsed ÷ requests" in SEED_SOURCES[AB_1000]["avg ms"]

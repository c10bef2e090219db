"""The seed article's figures and ours side by side, in its format."""

from __future__ import annotations

import math

from lab.loadgen import LoadSpec, run_load
from lab.notebook.article import COLUMNS, SEED_FIGURES, article_figures, article_table


def test_a_run_in_the_article_format_next_to_the_article(server):
    result = run_load(LoadSpec(url=server.url + "/fast", connections=4, duration_seconds=0.3))
    figures = article_figures(result)
    assert set(figures) == set(COLUMNS)
    assert 0 <= figures["% under 2 ms"] <= 100
    assert figures["p50 ms"] <= figures["p95 ms"] <= figures["p99 ms"] <= figures["max ms"]
    table = article_table({"4 connections": result},
                          seed_rows={"4 connections": "360 connections, 60 s (wrk)"})
    assert list(table.index) == ["this machine: 4 connections", "article: 360 connections, 60 s (wrk)"]
    assert table.loc["article: 360 connections, 60 s (wrk)", "% under 2 ms"] == 99.57
    assert math.isnan(table.loc["article: 360 connections, 60 s (wrk)", "p50 ms"])
    assert all(set(row) <= set(COLUMNS) for row in SEED_FIGURES.values())

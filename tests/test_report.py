"""The text report prints the run's one summary: one unit (ms), status codes, the rate kept or not."""

from __future__ import annotations

from test_summary import T0, answers

from lab.engine.report import format_run
from lab.engine.result import RunOutcome
from lab.measure.summary import summarize_run
from lab.units import NS_PER_MS, NS_PER_S

SPEC = {"mode": "open", "rate": 1000.0, "url": "http://127.0.0.1:9/", "connections": 4, "workers": 1,
        "duration_seconds": 1.0, "keepalive": True, "late_after_ms": 1.0,
        "thresholds": ["p50<1ms", "rps>=1000"]}


def test_an_open_loop_that_fell_behind_says_so_in_words() -> None:
    samples = answers([2.0] * 800, intended=True, every_ms=1.0)
    samples["sent_ns"][200:] += 30 * NS_PER_MS  # most went out 30 ms after their time
    samples["done_ns"][200:] += 30 * NS_PER_MS
    summary = summarize_run(samples, window_ns=(T0, T0 + NS_PER_S), target_rate=1000.0)
    text = format_run(summary, SPEC, RunOutcome(window_ns=(T0, T0 + NS_PER_S)))
    assert f"Requests/sec: {summary.rps:>12,.2f}" in text and summary.rps < 1000
    assert "Target rate:      1,000.00   late (>1 ms): 600 (75.0 %)" in text
    assert ("The target rate was not kept: 75.0 % of requests were sent late (more than 1 ms after "
            f"their intended time); achieved {summary.rps:,.0f} responses/s of the 1,000 asked for."
            ) in text
    assert "    200           800   p50 " in text
    assert "✗ p50<1ms (measured 32 ms)" in text and "✗ rps>=1000 (measured " in text
    assert "us" not in text.replace("Status", "")  # one unit for latencies: ms


def test_a_run_that_kept_its_rate_says_nothing_more() -> None:
    samples = answers([0.5] * 1000, intended=True, every_ms=1.0)
    summary = summarize_run(samples, window_ns=(T0, T0 + NS_PER_S), target_rate=1000.0)
    text = format_run(summary, {**SPEC, "thresholds": []}, RunOutcome(window_ns=(T0, T0 + NS_PER_S)))
    assert "late (>1 ms): 0 (0.0 %)" in text and "not kept" not in text and "Thresholds" not in text

"""The one summary of a run, and the thresholds checked on it: exact figures from made-up samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.errors import ConfigError
from lab.measure.samples import ErrorKind, empty
from lab.measure.summary import RunSummary, failure_reason, summarize_run
from lab.measure.thresholds import Outcome, check_thresholds, parse_threshold, verdict
from lab.units import NS_PER_MS, NS_PER_S

T0 = 10 * NS_PER_S  # a perf_counter_ns instant


def answers(latencies_ms: list[float], *, status: int = 200, every_ms: float = 1.0,
            intended: bool = False) -> np.ndarray:
    """One request per ``every_ms`` from T0, each answered after its latency."""
    samples = empty(len(latencies_ms))
    starts = T0 + (np.arange(len(latencies_ms)) * every_ms * NS_PER_MS).astype(np.int64)
    samples["sent_ns"] = starts
    if intended:
        samples["intended_ns"] = starts
    samples["first_byte_ns"] = starts + 1000
    samples["done_ns"] = starts + (np.asarray(latencies_ms) * NS_PER_MS).astype(np.int64)
    samples["status"] = status
    samples["response_bytes"] = 100
    samples["error"] = ErrorKind.NONE if status < 400 else ErrorKind.BAD_STATUS
    return samples


def test_rps_is_responses_over_the_real_time_drain_included() -> None:
    """The load stops being offered at 1 s, but answers keep coming until 3 s: the run lasted
    3 s, and the rate is what was answered over those 3 s, not over the 1 s offered."""
    samples = answers([2000.0] * 1000, every_ms=1.0)  # sent over 1 s, each answered 2 s later
    summary = summarize_run(samples, window_ns=(T0, T0 + NS_PER_S))
    assert summary.duration_s == pytest.approx(2.999, abs=1e-9)
    assert summary.rps == pytest.approx(1000 / 2.999)
    assert summary.responses == summary.requests == 1000


def test_the_window_runs_to_the_end_of_offering_when_everything_was_answered_before() -> None:
    samples = answers([1.0] * 100, every_ms=5.0)  # done by 0.496 s
    summary = summarize_run(samples, window_ns=(T0, T0 + NS_PER_S))
    assert summary.duration_s == 1.0 and summary.rps == 100.0


def test_without_a_window_the_samples_span_is_the_run() -> None:
    summary = summarize_run(answers([1.0] * 100, every_ms=5.0))
    assert summary.duration_s == pytest.approx(0.496)


def test_status_codes_are_counted_and_every_answer_is_timed() -> None:
    samples = np.concatenate([answers([1.0] * 30), answers([9.0] * 10, status=404),
                              answers([3.0] * 5, status=301)])
    summary = summarize_run(samples)
    assert summary.status_codes == {"200": 30, "301": 5, "404": 10}
    assert (summary.responses, summary.succeeded) == (45, 35)
    assert summary.errors == {"bad_status": 10}
    assert summary.by_status["404"].p50 == pytest.approx(9.0)
    assert summary.by_status["404"].count == 10
    assert summary.latency.count == 35  # latency is of the successful (2xx/3xx) answers


def test_late_requests_are_counted_in_the_open_loop() -> None:
    samples = answers([1.0] * 100, intended=True)
    samples["sent_ns"][:25] += 5 * NS_PER_MS  # a quarter went out 5 ms after their time
    summary = summarize_run(samples, target_rate=1000.0, late_after_ms=1.0)
    assert summary.open_loop and summary.late == 25 and summary.late_share == 0.25
    assert summary.kept_up is False
    on_time = summarize_run(answers([1.0] * 100, intended=True), target_rate=1000.0)
    assert on_time.late == 0 and on_time.kept_up is True
    assert summarize_run(answers([1.0] * 10)).kept_up is None  # a closed loop has no schedule


def test_a_summary_survives_its_json_form() -> None:
    samples = np.concatenate([answers([1.0, 2.0, 3.0]), answers([5.0], status=500)])
    samples["error"][0] = ErrorKind.TIMEOUT
    summary = summarize_run(samples, window_ns=(T0, T0 + NS_PER_S), target_rate=50.0)
    again = RunSummary.from_dict(summary.as_dict())
    assert again.as_dict() == summary.as_dict()
    assert math.isnan(summarize_run(empty(0)).latency.p50)


@pytest.mark.parametrize(("samples", "reason"), [
    (empty(0), "no request was made"),
    (answers([1.0] * 3, status=404), "every answer was 404"),
    (np.concatenate([answers([1.0] * 3, status=404), answers([1.0], status=500)]),
     "no 2xx/3xx answer: 3 404, 1 500"),
])
def test_a_run_without_a_success_says_why(samples: np.ndarray, reason: str) -> None:
    assert failure_reason(summarize_run(samples)) == reason


def test_a_run_without_any_answer_names_the_errors() -> None:
    samples = answers([1.0] * 5)
    samples["error"] = ErrorKind.CONNECT_REFUSED
    samples["error"][0] = ErrorKind.TIMEOUT
    assert failure_reason(summarize_run(samples)) == "no answer: 4 connect_refused, 1 timeout"


@pytest.mark.parametrize(("text", "figure", "operator", "limit", "unit"), [
    ("p50<1ms", "p50", "<", 1.0, "ms"),
    ("p99.9<=20ms", "p99_9", "<=", 20.0, "ms"),
    ("p(95) < 200", "p95", "<", 200.0, "ms"),
    ("mean<250us", "mean", "<", 250.0, "us"),
    ("max<2s", "max", "<", 2.0, "s"),
    ("errors<1%", "errors", "<", 1.0, "%"),
    ("errors<=3", "errors", "<=", 3.0, ""),
    ("rps>=1000", "rps", ">=", 1000.0, ""),
])
def test_threshold_expressions_are_read(text: str, figure: str, operator: str, limit: float,
                                        unit: str) -> None:
    threshold = parse_threshold(text)
    assert (threshold.figure, threshold.operator, threshold.limit, threshold.unit) == (
        figure, operator, limit, unit)


@pytest.mark.parametrize(("text", "complaint"), [
    ("p42<1ms", "unknown figure 'p42'"),
    ("rps>1ms", "rps takes a plain number"),
    ("p50<1%", "a latency takes us, ms or s"),
    ("errors<1ms", "errors take a count or a share"),
    ("p50 = 1ms", "is not FIGURE<NUMBER[UNIT]"),
    ("", "is not FIGURE<NUMBER[UNIT]"),
])
def test_a_bad_threshold_names_the_setting_and_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_threshold(text)
    assert caught.value.option == "thresholds" and complaint in str(caught.value)


def test_thresholds_are_checked_on_the_summary_in_their_own_units() -> None:
    samples = np.concatenate([answers([0.5] * 99), answers([0.5], status=503)])
    summary = summarize_run(samples, window_ns=(T0, T0 + NS_PER_S))  # 100 answers in 1 s
    checks = {check.threshold.expression: check for check in check_thresholds(
        ["p50<1ms", "p50<400us", "errors<1%", "errors<=1", "rps>=100", "rps>100"], summary)}
    assert checks["p50<1ms"].held and checks["p50<1ms"].measured == pytest.approx(0.5)
    assert not checks["p50<400us"].held and checks["p50<400us"].measured == pytest.approx(500)
    assert not checks["errors<1%"].held and checks["errors<1%"].measured == pytest.approx(1.0)
    assert checks["errors<=1"].held
    assert checks["rps>=100"].held and not checks["rps>100"].held
    assert checks["p50<400us"].describe() == "✗ p50<400us (measured 500 us)"
    assert checks["rps>=100"].describe() == "✓ rps>=100 (measured 100.0/s)"


def test_a_figure_that_was_not_measured_fails_its_threshold() -> None:
    summary = summarize_run(answers([1.0] * 3, status=404))
    (check,) = check_thresholds(["p99<1s"], summary)
    assert not check.held and check.describe() == "✗ p99<1s (not measured)"


def test_the_outcome_of_a_run() -> None:
    good = summarize_run(answers([1.0] * 10))
    assert verdict(good, check_thresholds(["p50<5ms"], good)) == (Outcome.PASSED, None)
    outcome, reason = verdict(good, check_thresholds(["p50<5ms", "p50<0.5ms"], good))
    assert outcome == Outcome.THRESHOLD_FAILED == 1
    assert reason == "threshold failed: p50<0.5ms (measured 1 ms)"
    bad = summarize_run(answers([1.0] * 10, status=404))
    assert verdict(bad, ()) == (Outcome.NO_SUCCESS, "no request succeeded: every answer was 404")
    assert Outcome.NO_SUCCESS == 3
    # a part of the run failed: its figures cover only the rest, so no threshold can pass it
    outcome, reason = verdict(good, check_thresholds(["p50<5ms"], good), ("worker 1: crashed",))
    assert (outcome, reason) == (Outcome.INCOMPLETE, "the run is incomplete: worker 1: crashed")
    assert Outcome.INCOMPLETE == 4

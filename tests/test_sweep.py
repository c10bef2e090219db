"""``sweep``: the interval's statistics on synthetic rounds, bad input refused before anything
runs, and real sweeps against the lab server in its own process (Nagle, backlog)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.experiments.capacity import CapacityPlan
from lab.experiments.effects import (
    FASTER,
    FEWEST_ROUNDS_FOR_A_VERDICT,
    NO_EFFECT,
    RANK_TEST,
    SLOWER,
    measure_effect,
    ratio_interval,
)
from lab.http.config import ServerConfig
from lab.peers.pinning import server_and_load_cores
from lab.records.store import RecordStore
from lab.server import ServerHandle, start_server

# --- statistics on synthetic rounds: the true ratio is known --------------------------------


def test_the_95_percent_interval_covers_the_true_ratio_about_95_times_in_100() -> None:
    """1000 simulated sweeps of 9 rounds each; round figures are log-normal with the same
    spread on both sides, so the ratio of the expected values is exactly ``true_ratio``.

    BCa with only 9 rounds covers a little less than it promises: 0.88-0.92 measured over
    several seeds here (a known small-sample property of bootstrap intervals, and why 9 rounds
    is the least worth reading). The bounds catch an interval that is broken either way: too
    narrow (an 80 % interval by mistake covers ~0.74 here) or so wide it always covers.
    """
    true_ratio, rounds, experiments = 1.25, 9, 1000
    rng = np.random.default_rng(4)
    covered = 0
    for experiment in range(experiments):
        shared = rng.normal(0, 0.1, rounds)  # the machine's mood of a round hits both settings
        baseline = np.exp(shared + rng.normal(0, 0.15, rounds))
        treated = true_ratio * np.exp(shared + rng.normal(0, 0.15, rounds))
        _, low, high = ratio_interval(baseline, treated, seed=experiment, resamples=1000)
        covered += low <= true_ratio <= high
    coverage = covered / experiments
    assert 0.87 <= coverage <= 0.99, coverage


def test_the_interval_brackets_the_ratio_and_narrows_with_less_noise() -> None:
    rng = np.random.default_rng(1)
    baseline = 1 + rng.normal(0, 0.02, 9)
    noisy_low, noisy_high = ratio_interval(baseline, 2 * baseline * (1 + rng.normal(0, 0.2, 9)))[1:]
    ratio, low, high = ratio_interval(baseline, 2 * baseline * (1 + rng.normal(0, 0.01, 9)))
    assert low < ratio < high
    assert low > 1.9 and high < 2.1
    assert high - low < noisy_high - noisy_low


@pytest.mark.parametrize(("factor", "expected"), [(3.0, SLOWER), (0.5, FASTER), (1.0, NO_EFFECT)])
def test_verdicts_of_clear_cases(factor: float, expected: str) -> None:
    rng = np.random.default_rng(7)
    baseline = list(1 + rng.normal(0, 0.03, 9))
    treated = list(factor * (1 + rng.normal(0, 0.03, 9)))
    effect = measure_effect({"knob": 1}, "p50", baseline, treated)
    assert effect.verdict == expected, effect
    assert (effect.p_value < 0.01) == (expected != NO_EFFECT)


def test_a_real_but_tiny_difference_is_inside_the_noise_band() -> None:
    """2 % slower on every round: significant, but within ±5 %, so no effect worth naming."""
    baseline = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01, 0.99]
    treated = [value * 1.02 for value in baseline]
    effect = measure_effect({}, "p50", baseline, treated)
    assert effect.p_value < 0.05
    assert effect.verdict == NO_EFFECT and effect.within_noise_band
    assert measure_effect({}, "p50", baseline, treated, noise_band=0.01).verdict == SLOWER


def test_three_rounds_can_never_name_an_effect() -> None:
    """The paired rank test's smallest two-sided p with 3 rounds is 2/8: no verdict, however
    large the ratio, which is why the CLI asks for 9 rounds by default."""
    effect = measure_effect({}, "p50", [1.0, 1.1, 0.9], [40.0, 41.0, 39.0])
    assert effect.ratio == pytest.approx(40.0)
    assert effect.ci_low > 30
    assert effect.verdict == NO_EFFECT


def test_six_rounds_all_one_way_are_the_fewest_that_name_an_effect() -> None:
    """Signed ranks with n rounds all one way give p = 2 / 2**n: 0.0625 at 5, 0.03125 at 6."""
    assert FEWEST_ROUNDS_FOR_A_VERDICT == 6
    baseline = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02]
    treated = [40 * value for value in baseline]
    five = measure_effect({}, "p50", baseline[:5], treated[:5])
    six = measure_effect({}, "p50", baseline, treated)
    assert five.p_value == pytest.approx(0.0625) and five.verdict == NO_EFFECT
    assert six.p_value == pytest.approx(0.03125) and six.verdict == SLOWER


def test_the_rank_test_respects_the_pairing_of_rounds() -> None:
    """Rounds that differ among themselves far more than the effect (the machine's mood moves
    both settings of a round) and a steady 10 % effect within every round: the pairs show it in
    every round, an unpaired test ranking all 18 figures together (Mann-Whitney U, p ~ 0.7
    here) cannot see it. The interval, resampling rounds as pairs, already saw it."""
    rng = np.random.default_rng(3)
    mood = np.exp(rng.normal(0, 0.5, 9))  # rounds 0.4x to 2.5x apart
    baseline = mood * (1 + rng.normal(0, 0.01, 9))
    treated = 1.10 * mood * (1 + rng.normal(0, 0.01, 9))
    effect = measure_effect({}, "p50", list(baseline), list(treated))
    assert effect.ci_low > 1.05 and effect.ci_high < 1.15, effect
    assert effect.p_value == pytest.approx(2 / 2**9), effect  # every round slower
    assert effect.verdict == SLOWER, effect
    assert effect.as_dict()["test"] == RANK_TEST


def test_no_effect_rules_out_a_fifth_but_the_same_rounds_a_fifth_slower_do_not() -> None:
    """What a sweep of a knob that does not matter can check: not that its ratio is near 1 (a
    20 % effect is "near 1" to 0.8-1.25) but that its interval excludes a 20 % change either
    way. The same rounds with the setting's figures made 20 % slower must fail that check."""
    rng = np.random.default_rng(5)
    mood = np.exp(rng.normal(0, 0.1, 9))
    baseline = mood * np.exp(rng.normal(0, 0.05, 9))
    treated = mood * np.exp(rng.normal(0, 0.05, 9))
    same = measure_effect({}, "p50", list(baseline), list(treated))
    slower = measure_effect({}, "p50", list(baseline), list(1.2 * treated))
    assert same.verdict == NO_EFFECT and same.rules_out(0.2), same
    assert 0.8 <= slower.ratio <= 1.25  # the old check passed this 20 % effect
    assert not slower.rules_out(0.2), slower


def test_the_forest_plot_has_a_row_per_effect_coloured_by_verdict() -> None:
    from lab.experiments.forest import forest_plot

    baseline = [1.0, 1.02, 0.98, 1.01, 0.99, 1.0, 1.03, 0.97, 1.0]
    effects = [measure_effect({"nodelay": False}, "p50", baseline, [40 * v for v in baseline]),
               measure_effect({"backlog": 511}, "p50", baseline, baseline[::-1])]
    figure = forest_plot(effects)
    axes = figure.axes[0]
    assert [tick.get_text() for tick in axes.get_yticklabels()] == [
        "backlog=511  p50", "nodelay=False  p50"]  # the first effect on top
    assert axes.get_xscale() == "log"
    colours = [line.get_color() for line in axes.lines if line.get_marker() == "o"]
    assert colours == ["tab:grey", "tab:red"]


# --- the command line -----------------------------------------------------------------------


def sweep(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "sweep", *argv], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize(("argv", "flag", "words"), [
    (["--knob", "nagle=true,false"], "--knob", "unknown server knob 'nagle'"),
    (["--knob", "backlog=511,0"], "--knob", "backlog=0"),
    (["--knob", "nodelay=true,maybe"], "--knob", "not on/off"),
    (["--knob", "nodelay"], "--knob", "NAME=VALUE"),
    (["--knob", "nodelay=true,false", "--rounds", "2"], "--rounds", "at least 3"),
    (["--knob", "nodelay=true,false", "--set", "read_buffer_bytes=1"], "--set", "out of range"),
    (["--knob", "nodelay=true,false", "--set", "nodelay=true"], "--set", "is swept"),
    (["--knob", "nodelay=true,false", "--set", "quickack=true,false"], "--set", "one value"),
    (["--knob", "nodelay=true,false", "--knob", "nodelay=false,true"], "--knob", "given twice"),
    (["--knob", "nodelay=true,false", "--duration", "0"], "--duration", "out of range"),
    (["--knob", "nodelay=true,false", "--metric", "p42"], "--metric", "p42"),
    ([], "--knob", "at least one knob"),
    (["--knob", "nodelay=true,false", "--stage", "1s:0"], "--stage", "not both 0"),
    (["--knob", "nodelay=true,false", "--plot", "forest.gif"], "--plot", ".png"),
    (["--knob", "nodelay=true,false", "--stage", "1s:10", "--warmup", "1"], "--stage", "warm-up"),
])
def test_bad_input_is_one_line_and_exit_2_before_anything_runs(
        tmp_path: Path, argv: list[str], flag: str, words: str) -> None:
    done = sweep("/fast", *argv, "--data-dir", str(tmp_path / "data"), timeout=60)
    assert done.returncode == 2, done.stderr
    error_lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, done.stderr
    assert flag in error_lines[0] and words in error_lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "data").glob("*/record.json"))  # nothing ran, nothing saved
    assert done.stdout == ""


def _effect(report: dict[str, Any], setting: dict[str, Any], metric: str) -> dict[str, Any]:
    matches = [e for e in report["effects"] if e["setting"] == setting and e["metric"] == metric]
    assert len(matches) == 1, report["effects"]
    return matches[0]


@pytest.mark.timing
def test_nagle_and_delayed_ack_are_slower_by_far_more_than_tenfold(tmp_path: Path) -> None:
    """nodelay off with the answer split in two writes: each answer waits for the client's
    delayed ACK (~40 ms) where it otherwise takes well under 1 ms."""
    done = sweep("/fast", "--knob", "nodelay=true,false", "--set", "split_writes=true",
                 "--rounds", "9", "--duration", "0.3", "--seed", "13", "--json",
                 "--data-dir", str(tmp_path / "data"), "--plot", str(tmp_path / "forest.png"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    effect = _effect(report, {"nodelay": False}, "p50")
    assert effect["verdict"] == "slower", effect
    assert effect["ci_low"] > 10, effect
    assert effect["ci_low"] <= effect["ratio"] <= effect["ci_high"]
    # every round's figures are there, each the summary of a saved record tagged with the sweep
    runs = report["runs"]
    assert len(runs) == 18 and {run["round"] for run in runs} == set(range(1, 10))
    assert all(run["latency_ms"]["p50"] > 0 and run["requests"] > 0 for run in runs)
    assert report["seed"] == 13 and len(report["order"]) == 9
    assert "run 18/18" in done.stderr  # progress went to stderr
    assert (tmp_path / "forest.png").read_bytes().startswith(b"\x89PNG")
    store = RecordStore(tmp_path / "data")
    tagged = [info for info in store.infos() if report["sweep_id"] in info.tags]
    assert {info.id for info in tagged} == {run["record_id"] for run in runs}
    slow = [run for run in runs if run["setting"] == {"nodelay": False}]
    saved = store.load(slow[0]["record_id"])
    assert saved.summary.latency.p50 == slow[0]["latency_ms"]["p50"]
    assert saved.server_config is not None and saved.server_config["nodelay"] is False


@pytest.mark.timing
def test_the_listen_backlog_makes_no_detectable_difference(tmp_path: Path) -> None:
    """backlog needs a new listener: every run gets a fresh server, and 511 vs 1024 queued
    connections cannot matter to 10 connections opened once.

    The old check, 0.8 <= ratio <= 1.25, passed a knob that made every run 20 % slower. This
    one asks the median round's ratio to lie within 8 %, which such a knob fails (below).
    The median round, not the interval: at a load average of 7 a run now and then loses a
    third to another job (rounds measured 0.71, 0.81 and 1.41 among others within 3 %), and
    one such round widens the interval of the ratio of means past 1.2 (0.99-1.23 measured)
    while the median round does not move.

    /delay/5, not /fast: on /fast (0.2 ms) a busy machine's scheduling noise is as large as
    the answer (rounds' ratios 0.47-3.09 at a load average of 5); against a 5 ms answer it is
    a few per cent."""
    done = sweep("/delay/5", "--knob", "backlog=511,1024", "--rounds", "9", "--duration", "0.3",
                 "--metric", "p50", "--json", "--no-save")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["restart_per_run"] is True
    _effect(report, {"backlog": 1024}, "p50")
    p50 = {(run["round"], run["setting"]["backlog"]): run["latency_ms"]["p50"] for run in report["runs"]}
    ratios = np.array([p50[number, 1024] / p50[number, 511] for number in range(1, 10)])
    typical = float(np.median(ratios))
    # A 20 % effect on these rounds fails it whatever they were: 1.2 x (at least 1/1.08) > 1.08.
    assert 1 / 1.08 <= typical <= 1.08, ratios


def test_a_sweep_too_short_for_a_verdict_says_so() -> None:
    """Five rounds all one way give the signed-rank test p = 0.0625: the text says no verdict
    can name an effect, instead of leaving 'no detectable effect' to be read as evidence."""
    done = sweep("/fast", "--knob", "nodelay=true,false", "--rounds", "5", "--duration", "0.1",
                 "--no-save")
    assert done.returncode == 0, done.stderr
    assert "with 5 rounds the paired rank test cannot reach p < 0.05" in done.stdout, done.stdout
    assert "--rounds 6 or more" in done.stdout
    # the bounds are said to be an interval, and which one (not a bare "[471, 483]")
    interval = r"nodelay=false  p50: ×\S+ \(95 % interval \S+ to \S+, p=\S+\)"
    assert re.search(interval, done.stdout), done.stdout


def test_a_staged_sweep_keeps_each_runs_stages(tmp_path: Path) -> None:
    """Every run is an open loop in the given stages; its figures per stage come with it."""
    done = sweep("/fast", "--knob", "quickack=false,true", "--rounds", "3", "--stage", "0.3s:200",
                 "--stage", "0.3s:0-400", "--json", "--no-save")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["stages"] == ["0.3s:200", "0.3s:0-400"]
    assert report["duration_seconds"] == pytest.approx(0.6) and report["warmup_seconds"] == 0
    for run in report["runs"]:
        assert [stage["rate"] for stage in run["stages"]] == [200, 200]  # the ramp's mean
        assert [stage["requests"] for stage in run["stages"]] == [60, 60]
        assert run["requests"] == 120


# --- capacity -------------------------------------------------------------------------------


def capacity(*argv: str, cores: str | None = None) -> subprocess.CompletedProcess[str]:
    pin = ["taskset", "-c", cores] if cores is not None and shutil.which("taskset") else []
    return subprocess.run([*pin, sys.executable, "-m", "lab", "capacity", *argv],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("argv", "flag", "words"), [
    (["--slo", "p99<<20ms"], "--slo", "is not FIGURE<NUMBER"),
    (["--slo", "p42<20ms"], "--slo", "unknown figure"),
    ([], "--slo", "give an SLO"),
    (["--slo", "p99<20ms", "--start-rate", "0"], "--start-rate", "out of range"),
])
def test_capacity_refuses_bad_input_in_one_line(argv: list[str], flag: str, words: str) -> None:
    done = capacity("http://127.0.0.1:9/work/1000", *argv)
    assert done.returncode == 2, done.stderr
    error_lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and flag in error_lines[0] and words in error_lines[0], done.stderr
    assert "probe" not in done.stderr and done.stdout == ""


def test_capacity_of_a_remote_target_needs_allow_remote() -> None:
    done = capacity("http://192.0.2.1/fast", "--slo", "p99<20ms")
    assert done.returncode == 2 and "--allow-remote" in done.stderr and "probe" not in done.stderr
    plan = CapacityPlan(url="http://192.0.2.1/fast", slo=("p99<20ms",), connections=2, duration_seconds=1,
                        start_rate=10, max_rate=20, precision=0.05, budget_seconds=10, allow_remote=True)
    assert plan.spec(10).allow_remote  # the owner's word reaches every probe


def test_capacity_of_a_target_that_answers_nothing_is_not_searched_for() -> None:
    """Nothing listening is not an SLO that fails at every rate: the search stops at the first
    rate, says why in one line and exits 3 (bench's 'no request succeeded')."""
    began = time.monotonic()
    done = capacity("http://127.0.0.1:9/fast", "--slo", "p99<20ms", "-d", "0.5")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("probe ") == 2  # the failure is confirmed once, no halving below it
    assert done.stderr.splitlines()[-1].startswith("lab: no request succeeded: no answer:")
    assert "connect_refused" in done.stderr and "(at 100 requests/s)" in done.stderr
    assert time.monotonic() - began < 30
    as_json = capacity("http://127.0.0.1:9/fast", "--slo", "p99<20ms", "-d", "0.5", "--json")
    assert as_json.returncode == 3 and "connect_refused" in json.loads(as_json.stdout)["no_success"]


@pytest.fixture
def one_core_server() -> Iterator[tuple[ServerHandle, str | None]]:
    """The lab server in its own process on the first core; the generator gets the second."""
    server_cores, load_cores = server_and_load_cores()
    with start_server(ServerConfig(), isolation="process") as handle:
        if server_cores is not None:
            for pid in handle.pids:
                os.sched_setaffinity(pid, server_cores)
        yield handle, None if load_cores is None else ",".join(map(str, load_cores))


def closed_loop_rps(url: str, cores: str | None) -> float:
    """What the server answers flat out right now: its service rate, neighbours included."""
    pin = ["taskset", "-c", cores] if cores is not None and shutil.which("taskset") else []
    done = subprocess.run([*pin, sys.executable, "-m", "lab", "bench", url, "-c", "10", "-d", "1.5",
                           "--json"], capture_output=True, text=True, timeout=120, check=True)
    return float(json.loads(done.stdout)["rps"])


@pytest.mark.timing
def test_capacity_of_one_millisecond_of_cpu_per_request_is_under_a_thousand(
        one_core_server: tuple[ServerHandle, str | None]) -> None:
    """/work/1000 keeps one core busy 1 ms per request: no more than 1000 requests/s can meet
    p99<20ms, and a server that has the core to itself gets well past 600.

    On this shared machine another job may take part of the server's core; the closed-loop
    rate measured first says how much is left. The search must find most of it, never more,
    and the 600 floor holds whenever the core was the server's (800+ requests/s flat out).
    """
    server, load_cores = one_core_server
    url = server.url + "/work/1000"
    before = closed_loop_rps(url, load_cores)
    began = time.monotonic()
    done = capacity(url, "--slo", "p99<20ms", "--duration", "1", "--budget", "60", "--json",
                    cores=load_cores)
    took = time.monotonic() - began
    after = closed_loop_rps(url, load_cores)  # a neighbour may have come or gone meanwhile
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    found = report["capacity_rps"]
    assert found <= 1050 and found <= 1.1 * max(before, after), (found, before, after, done.stderr)
    assert found >= 0.6 * min(before, after), (found, before, after, done.stderr)
    if min(before, after) >= 800:
        assert found >= 600, (found, before, after, done.stderr)
    assert took < 90  # the budget bounds the search
    assert done.stderr.count("probe ") == len(report["probes"]) >= 3  # printed as it went
    low, high = report["bracket"]
    assert high is not None and low < high


def test_capacity_stops_when_the_target_goes_away_after_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that dies mid-search is not a capacity at the last rate that passed."""
    from lab.experiments import capacity as search_module
    from lab.measure.samples import empty
    from lab.measure.summary import summarize_run

    def probe(plan: CapacityPlan, rate: float) -> search_module.Probe:
        if rate <= 200:
            return search_module.Probe(rate=rate, passed=True, why="held", summary=summarize_run(empty(0)))
        return search_module.Probe(rate=rate, passed=False, answered=False, unreachable=True,
                                   why="no request succeeded: no answer: 4 connect_refused",
                                   summary=summarize_run(empty(0)))

    monkeypatch.setattr(search_module, "probe", probe)
    plan = CapacityPlan(url="http://127.0.0.1:9/", slo=("p99<20ms",), connections=2, duration_seconds=0.01,
                        start_rate=100, max_rate=10_000, precision=0.05, budget_seconds=60)
    found = search_module.search(plan)
    assert found.no_success is not None and found.no_success.endswith("connect_refused (at 400 requests/s)")
    assert [p.rate for p in found.probes] == [100, 200, 400, 400]  # confirmed once, then stopped

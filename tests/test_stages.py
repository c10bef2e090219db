"""Rate stages of the open loop: the schedule's arithmetic, bad stages refused, and a real
staged run whose every stage sends what it should."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from lab.engine.spec import LoadSpec
from lab.engine.stages import Schedule, parse_stage, parse_stages
from lab.errors import ConfigError
from lab.http.config import ServerConfig
from lab.loadgen import run_load
from lab.server import ServerHandle, start_server

STAGES = ("1s:500", "1s:2000", "1s:1000")


def due_times(schedule: Schedule) -> np.ndarray:
    return np.array([schedule.due_s(j) for j in range(int(schedule.total_requests))])


def test_constant_stages_space_their_requests_evenly() -> None:
    schedule = Schedule(parse_stages(STAGES))
    assert schedule.duration_s == 3.0 and schedule.total_requests == 3500
    due = due_times(schedule)
    assert np.histogram(due, bins=[0, 1, 2, 3])[0].tolist() == [500, 2000, 1000]
    assert due[1] - due[0] == pytest.approx(1 / 500)
    assert due[600] - due[599] == pytest.approx(1 / 2000)
    assert schedule.due_s(3500) is None  # past the last stage


def test_a_ramp_offers_the_area_under_its_rate() -> None:
    """0 -> 1000 requests/s over 2 s: 250 in the first second, 750 in the second, and the
    gaps shrink as the rate grows."""
    schedule = Schedule(parse_stages(("2s:0-1000",)))
    due = due_times(schedule)
    assert schedule.total_requests == 1000
    assert np.histogram(due, bins=[0, 1, 2])[0].tolist() == [250, 750]
    gaps = np.diff(due)
    assert gaps[10] > gaps[500] > gaps[990]
    assert 1 / gaps[-1] == pytest.approx(1000, rel=0.01)  # the rate at the end of the ramp


def test_workers_taking_turns_give_the_one_schedule() -> None:
    """Worker w of 3 sends requests w, w+3, w+6...: merged, exactly the single schedule."""
    schedule = Schedule(parse_stages(("1s:300", "1s:100-700")))
    turns = [schedule.due_s(w + 3 * k) for w in range(3) for k in range(234)]
    merged = sorted(due for due in turns if due is not None)  # 702 turns, 700 requests
    assert merged == pytest.approx(due_times(schedule).tolist())


@pytest.mark.parametrize("text", ["1s", "fast:500", "1s:x", "0s:500", "1s:0", "1s:0-0", "1s:-5"])
def test_bad_stages_are_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stage(text)
    assert caught.value.option == "stages"


def test_stages_set_the_duration_and_exclude_a_rate() -> None:
    spec = LoadSpec(url="http://127.0.0.1:9/fast", mode="open", stages=STAGES)
    assert spec.duration_seconds == 3.0
    with pytest.raises(ConfigError, match="either a rate or stages"):
        LoadSpec(url="http://127.0.0.1:9/", mode="open", rate=100, stages=STAGES)
    with pytest.raises(ConfigError, match="open loop"):
        LoadSpec(url="http://127.0.0.1:9/", stages=STAGES)


def test_bench_refuses_a_bad_stage_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "bench", "http://127.0.0.1:9/", "--stage",
                           "1s:fast"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "python -m lab bench: error: --stage: '1s:fast' is not DURATION:RATE or DURATION:FROM-TO, "
        "e.g. 30s:1000 or 1m:100-2000 (see python -m lab bench --help)"]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with start_server(ServerConfig(), isolation="process") as handle:
        yield handle


@pytest.mark.timing
def test_each_stage_sends_its_requests_within_five_percent(server: ServerHandle) -> None:
    """Two workers sharing one staged schedule: the requests *sent* (not only scheduled) in
    each stage's second are within 5 % of its rate, and every one is answered."""
    spec = LoadSpec(url=server.url + "/fast", mode="open", stages=STAGES, connections=20, workers=2)
    result = run_load(spec)
    sent_s = (result.samples["sent_ns"] - result.start_ns) / 1e9
    sent_per_stage = np.histogram(sent_s, bins=[0, 1, 2, 3])[0]
    for sent, planned in zip(sent_per_stage, (500, 2000, 1000), strict=True):
        assert abs(sent - planned) <= 0.05 * planned, sent_per_stage
    assert result.summary.succeeded == 3500


@pytest.mark.timing
def test_bench_json_has_each_stage_with_its_rate_requests_and_latency(server: ServerHandle) -> None:
    argv = [arg for stage in STAGES for arg in ("--stage", stage)]
    done = subprocess.run([sys.executable, "-m", "lab", "bench", server.url + "/fast", *argv, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["mode"] == "open" and report["requests"] == 3500
    stages = report["stages"]
    assert [stage["rate"] for stage in stages] == [500, 2000, 1000]
    for stage in stages:
        assert abs(stage["requests"] - stage["rate"]) <= 0.05 * stage["rate"], stage
        assert abs(stage["rps"] - stage["rate"]) <= 0.05 * stage["rate"], stage
        assert 0 < stage["latency_ms"]["p50"] <= stage["latency_ms"]["p99"]

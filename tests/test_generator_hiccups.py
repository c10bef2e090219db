"""The generator's hiccup meter (``LoadSpec(hiccup_meter=True)``, ``bench --hiccup-meter``): a
pause of the generator's own loop shows in its series and not in the server's, a stall of the
server shows in the server's and not in the generator's; the series reaches the result,
``bench --json``, the record, ``show`` and the timeline plot, each saying whose loop it timed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import synthetic_samples

import lab
from lab.cli import main
from lab.engine.spec import LoadSpec
from lab.http.config import ServerConfig
from lab.measure.hiccup import hiccup_record, hiccup_summary, largest_hiccups
from lab.measure.samples import start_ns
from lab.records.experiment import record_from_result
from lab.records.plots import timeline
from lab.records.record import Record
from lab.records.store import RecordStore
from lab.resources import HICCUP_FIELDS
from lab.server import ServerHandle, start_server
from lab.units import NS_PER_MS, NS_PER_S

PAUSE_MS = 300
PAUSE_AFTER_S = 0.8  # the generator's first pause comes this long after the load starts
# Generous, for a shared 2-core machine: what a loop may lose to the scheduler without
# anything being injected.
NOISE_MS = 150


@pytest.fixture(scope="module")
def plain_server() -> Iterator[ServerHandle]:
    with start_server(ServerConfig(), isolation="process") as handle:
        yield handle


def open_load(server: ServerHandle, seconds: float, **knobs: Any) -> LoadSpec:
    # A modest open loop: requests are due on the clock, so a pause of the generator delays
    # the ones due meanwhile, timed from their intended send.
    return LoadSpec(url=server.url + "/fast", mode="open", rate=200, connections=4,
                    duration_seconds=seconds, **knobs)


@pytest.mark.timing
def test_a_pause_of_the_generators_loop_shows_in_its_meter_and_not_the_servers() -> None:
    with start_server(ServerConfig(hiccup_meter=True), isolation="process") as server:
        result = lab.run_load(open_load(server, PAUSE_AFTER_S + 0.8, hiccup_meter=True,
                                        pause_every_seconds=PAUSE_AFTER_S, pause_ms=PAUSE_MS))
        server_series = server.hiccups(result.start_ns)
    generator_series = result.generator_hiccups
    assert generator_series is not None and generator_series.dtype == np.dtype(list(HICCUP_FIELDS))
    (ended_s, biggest_ms), (_, second_ms) = largest_hiccups(generator_series, 2, start_ns=result.start_ns)
    assert 0.8 * PAUSE_MS <= biggest_ms <= PAUSE_MS + NOISE_MS
    assert second_ms < NOISE_MS  # one pause in the run, one hiccup
    # a hiccup is recorded when the loop wakes: at the end of the pause
    assert PAUSE_AFTER_S + 0.8 * PAUSE_MS / 1000 <= ended_s <= PAUSE_AFTER_S + PAUSE_MS / 1000 + 0.3
    assert hiccup_summary(server_series).max < NOISE_MS  # the server's loop never stopped...
    assert result.latency.max >= 0.8 * PAUSE_MS  # ...yet the requests due meanwhile were late
    record = record_from_result(result, server_hiccups=server_series)
    server_kept, generator_kept = record.hiccups
    assert (server_kept.source, generator_kept.source) == ("server", "generator")
    assert generator_kept.largest()[1] == pytest.approx(biggest_ms)
    assert server_kept.largest()[1] < NOISE_MS


@pytest.mark.timing
def test_a_stall_of_the_servers_loop_shows_in_its_meter_and_not_the_generators() -> None:
    config = ServerConfig(hiccup_meter=True, stall_every_seconds=0.5, stall_ms=PAUSE_MS)
    with start_server(config, isolation="process") as server:
        result = lab.run_load(open_load(server, 1.5, hiccup_meter=True))
        server_series = server.hiccups(result.start_ns)
    assert result.generator_hiccups is not None
    assert 0.8 * PAUSE_MS <= hiccup_summary(server_series).max <= PAUSE_MS + NOISE_MS
    assert hiccup_summary(result.generator_hiccups).max < NOISE_MS  # it waited, its loop ran


def bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "bench", *argv], capture_output=True,
                          text=True, timeout=60)


def test_off_by_default_and_on_with_the_flag_in_bench_json_and_text(plain_server: ServerHandle) -> None:
    url = plain_server.url + "/fast"
    off = bench(url, "--rate", "200", "-d", "0.3", "--json")
    assert off.returncode == 0, off.stderr
    assert "hiccups" not in json.loads(off.stdout)
    on = bench(url, "--rate", "200", "-d", "0.5", "--json", "--hiccup-meter")
    assert on.returncode == 0, on.stderr
    [kept] = json.loads(on.stdout)["hiccups"]
    assert kept["source"] == "generator" and kept["interval_s"] == 0.1
    # a 1 ms tick over the measured 0.5 s: hundreds of ticks even on a busy machine
    assert kept["distribution"]["count"] >= 100 and len(kept["series"]) >= 3
    text = bench(url, "--rate", "200", "-d", "0.3", "--hiccup-meter")
    assert text.returncode == 0, text.stderr
    assert "hiccups of the generator's loop (" in text.stdout


def test_a_local_result_without_the_meter_has_no_series(plain_server: ServerHandle) -> None:
    result = lab.run_load(open_load(plain_server, 0.2))
    assert result.generator_hiccups is None and result.generator_hiccup_record() is None
    assert record_from_result(result).hiccups == ()


@pytest.mark.parametrize(("argv", "message"), [
    (["--pause-ms", "300"], "--pause-every: a pause of the generator's loop needs how often"),
    (["--pause-every", "1"], "--pause-ms: a pause of the generator's loop needs its length"),
    (["--pause-every", "0"], "--pause-every: 0.0 is out of range"),
])
def test_a_pause_half_asked_for_is_one_line_naming_the_flag(argv: list[str], message: str) -> None:
    done = bench("http://127.0.0.1:9/", "-d", "60", *argv)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"python -m lab bench: error: {message}"), line


def synthetic_series(first_ns: int, seconds: float, pause_at_s: float, pause_ms: float) -> np.ndarray:
    """A 1 ms tick with 0.1 ms of lateness, and one pause."""
    ticks = int(seconds * 1000)
    series = np.zeros(ticks, dtype=list(HICCUP_FIELDS))
    series["at_ns"] = first_ns + np.arange(ticks, dtype=np.int64) * NS_PER_MS
    series["hiccup_ns"] = 100_000
    series["hiccup_ns"][int(pause_at_s * 1000)] = round(pause_ms * NS_PER_MS)
    return series


def test_the_record_show_and_plot_keep_the_server_and_the_generator_apart(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = synthetic_samples()
    first = int(start_ns(samples).min())
    server_kept = hiccup_record(synthetic_series(first, 1.0, 0.25, 40), source="server", start_ns=first)
    generator_kept = hiccup_record(synthetic_series(first, 1.0, 0.75, PAUSE_MS), source="generator",
                                   start_ns=first)
    record = Record.create(samples=samples, load_spec={"mode": "open", "rate": 5000},
                           hiccups=[server_kept, generator_kept])
    store = RecordStore(tmp_path / "data")
    store.save(record)
    assert store.load(record.id).hiccups == (server_kept, generator_kept)
    assert main(["show", record.id, "--data-dir", str(tmp_path / "data")]) == 0
    shown = capsys.readouterr().out
    assert "hiccups of the server's loop" in shown and "max 40.00 ms" in shown
    assert "hiccups of the generator's loop" in shown and f"max {PAUSE_MS:.2f} ms" in shown
    lines = {str(line.get_label()): line for line in timeline(record).axes[0].get_lines()}
    server_line = next(line for label, line in lines.items() if "server loop hiccups" in label)
    generator_line = next(line for label, line in lines.items() if "generator loop hiccups" in label)
    assert server_line.get_linestyle() != generator_line.get_linestyle()
    for line, at_s, peak_ms in ((server_line, 0.25, 40), (generator_line, 0.75, PAUSE_MS)):
        x, y = line.get_data()
        assert max(y) == pytest.approx(peak_ms)
        assert x[np.argmax(y)] == pytest.approx(at_s - at_s % 0.1 + 0.05)


def test_a_cluster_run_brings_back_its_workers_series(plain_server: ServerHandle) -> None:
    pytest.importorskip("distributed")
    result = lab.run_load(open_load(plain_server, 0.5, hiccup_meter=True, pause_every_seconds=0.3,
                                    pause_ms=100).replace(connections=4, workers=1), cluster="local:1")
    assert result.generator_hiccups is not None
    series = result.generator_hiccups
    # every tick from the load's start, moved onto the client's clock as the samples are
    assert series.size >= 100 and series["at_ns"].min() >= result.start_ns - NS_PER_S // 10
    assert (result.generator_hiccups["at_ns"] <= result.end_ns + NS_PER_S).all()
    assert hiccup_summary(series).max >= 80

"""The hiccup meter: a pause of the server's loop shows in its series, at the time the requests
that waited for it came back and about as long; a slow handler that awaits does not show."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import synthetic_samples
from rawhttp import Reader, connect, get

from lab.cli import main
from lab.errors import CorruptRecord
from lab.http.config import ServerConfig
from lab.measure.hiccup import hiccup_record, hiccup_summary, largest_hiccups
from lab.measure.samples import start_ns
from lab.records.export import summary_document
from lab.records.plots import timeline
from lab.records.record import Record
from lab.records.store import RecordStore
from lab.resources import HICCUP_FIELDS
from lab.server import ServerHandle, start_server
from lab.units import NS_PER_MS

PAUSE_MS = 300
PAUSE_AFTER_S = 0.8  # the stall injector's first stall comes this long after the server starts
# Generous, for a shared 2-core machine: what the loop may lose to the scheduler or to the
# test's own threads (the GIL) without anything being injected.
NOISE_MS = 150


def load(port: int, path: str, seconds: float, answers: list[tuple[int, int]]) -> None:
    """Requests one after another on one keep-alive connection; (sent, done) of each."""
    deadline = time.perf_counter() + seconds
    with connect(port, timeout=10) as sock:
        reader = Reader(sock)
        while time.perf_counter() < deadline:
            sent = time.perf_counter_ns()
            sock.sendall(get(path))
            assert reader.response().status == 200
            answers.append((sent, time.perf_counter_ns()))


def run_load(server: ServerHandle, path: str, seconds: float, clients: int) -> np.ndarray:
    answers: list[tuple[int, int]] = []
    threads = [threading.Thread(target=load, args=(server.port, path, seconds, answers))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return np.array(answers, dtype=np.int64)


@pytest.mark.timing
def test_a_loop_pause_mid_run_shows_at_its_time_and_about_its_size() -> None:
    config = ServerConfig(hiccup_meter=True, stall_every_seconds=PAUSE_AFTER_S, stall_ms=PAUSE_MS)
    with start_server(config) as server:
        started_ns = time.perf_counter_ns()
        answers = run_load(server, "/fast", PAUSE_AFTER_S + 0.8, clients=2)
        series = server.hiccups()
    (ended_s, biggest_ms), (_, second_ms) = largest_hiccups(series, 2, start_ns=started_ns)
    assert 0.8 * PAUSE_MS <= biggest_ms <= PAUSE_MS + NOISE_MS
    assert second_ms < NOISE_MS
    assert PAUSE_AFTER_S - 0.1 <= ended_s <= PAUSE_AFTER_S + PAUSE_MS / 1000 + 0.5
    # the slowest request is the one that waited for the pause: it came back as the loop woke
    slowest = answers[np.argmax(answers[:, 1] - answers[:, 0])]
    assert (slowest[1] - slowest[0]) / NS_PER_MS >= 0.8 * PAUSE_MS
    assert abs((slowest[1] - started_ns) / 1e9 - ended_s) < 0.1


@pytest.mark.timing
def test_a_slow_handler_that_awaits_leaves_the_loop_free() -> None:
    with start_server(ServerConfig(hiccup_meter=True)) as server:
        answers = run_load(server, f"/delay/{PAUSE_MS}", 0.7, clients=4)
        series = server.hiccups()
    latencies_ms = (answers[:, 1] - answers[:, 0]) / NS_PER_MS
    assert latencies_ms.min() >= 0.95 * PAUSE_MS  # the requests were slow (the loop's timers round)...
    assert hiccup_summary(series).max < NOISE_MS  # ...and the loop never was


def test_the_meter_is_off_by_default_and_a_live_change_starts_it() -> None:
    with start_server(ServerConfig()) as server:
        time.sleep(0.05)
        assert server.hiccups().size == 0
        server.reconfigure(hiccup_meter=True)
        since = time.perf_counter_ns()
        time.sleep(0.1)
        series = server.hiccups(since)
    # a 1 ms tick: tens of ticks in 0.1 s even on a busy machine
    assert series.size >= 10
    assert (series["at_ns"] >= since).all() and np.all(np.diff(series["at_ns"]) > 0)


def synthetic_series(start_ns: int, seconds: float, pause_at_s: float, pause_ms: float) -> np.ndarray:
    """A 1 ms tick with 0.1 ms of lateness, and one pause."""
    ticks = int(seconds * 1000)
    series = np.zeros(ticks, dtype=list(HICCUP_FIELDS))
    series["at_ns"] = start_ns + np.arange(ticks, dtype=np.int64) * 1_000_000
    series["hiccup_ns"] = 100_000
    paused = int(pause_at_s * 1000)
    series["hiccup_ns"][paused] = round(pause_ms * NS_PER_MS)
    return series


def test_a_record_keeps_the_hiccups_through_the_store_json_and_show(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = synthetic_samples()
    first = int(start_ns(samples).min())
    kept = hiccup_record(synthetic_series(first - 500_000_000, 3.0, 1.234 + 0.5, PAUSE_MS),
                         source="server", start_ns=first)
    assert kept.largest() == (pytest.approx(1.2), pytest.approx(PAUSE_MS))
    assert kept.distribution.max == pytest.approx(PAUSE_MS)
    assert kept.distribution.p50 == pytest.approx(0.1)
    assert kept.series[0][0] == 0.0  # ticks before the run's first request are not the run's
    record = Record.create(samples=samples, load_spec={"mode": "open", "rate": 5000},
                           name="with hiccups", hiccups=[kept])
    store = RecordStore(tmp_path / "data")
    store.save(record)
    loaded = store.load(record.id)
    assert loaded.hiccups == (kept,)
    assert summary_document(loaded)["hiccups"][0]["series"][12] == [1.2, PAUSE_MS]
    assert main(["show", record.id, "--data-dir", str(tmp_path / "data")]) == 0
    shown = capsys.readouterr().out
    assert f"hiccups of the server's loop ({kept.distribution.count} ticks)" in shown
    assert f"max {PAUSE_MS:.2f} ms; largest in the 0.1 s from 1.20 s into the run" in shown


def test_a_damaged_hiccup_entry_is_a_corrupt_record(tmp_path) -> None:
    record = Record.create(samples=synthetic_samples(), load_spec={"mode": "open", "rate": 5000})
    metadata = record.metadata()
    metadata["hiccups"] = [{"source": "server", "interval_s": 0.1, "distribution": {},
                            "series": [[0.0, -5.0]]}]
    with pytest.raises(CorruptRecord, match=r"hiccups\.series: a hiccup must be a finite number of ms"):
        Record.from_metadata(metadata, record.samples)


def test_the_timeline_plot_draws_the_hiccups_on_the_runs_time_axis() -> None:
    samples = synthetic_samples()
    first = int(start_ns(samples).min())
    kept = hiccup_record(synthetic_series(first, 1.0, 0.5, PAUSE_MS), source="server", start_ns=first)
    record = Record.create(samples=samples, load_spec={"mode": "open", "rate": 5000}, hiccups=[kept])
    top = timeline(record).axes[0]
    [line] = [line for line in top.get_lines() if "server loop hiccups" in str(line.get_label())]
    x, y = line.get_data()
    assert max(y) == pytest.approx(PAUSE_MS)
    assert x[np.argmax(y)] == pytest.approx(0.55)  # the middle of the interval that held it


@pytest.mark.timing
def test_a_gc_stall_is_a_real_collection_and_shows_as_a_hiccup() -> None:
    # 500,000 containers: a full collection walks each one, tens of ms at the least
    config = ServerConfig(hiccup_meter=True, stall_every_seconds=0.3, stall_gc_heap_objects=500_000)
    with start_server(config) as server:
        started_ns = time.perf_counter_ns()
        time.sleep(0.8)
        series, stalls = server.hiccups(started_ns), server.stats()["stalls"]
    assert stalls >= 1
    assert hiccup_summary(series).max >= 10

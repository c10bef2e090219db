"""The generator against the lab's own server on loopback.

The server runs in its own process (isolation="process"), as it must be whenever numbers
are compared. Bounds on times are generous and only for physical effects (a 20 ms sleep, a
400 ms stall, Nagle's ~40 ms).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lab.http.config import ServerConfig
from lab.loadgen import LoadProgress, LoadResult, LoadSpec, run_load, start_load
from lab.measure.samples import MISSING, ErrorKind
from lab.options import from_dict
from lab.records.store import RecordStore, save_run
from lab.server import ServerHandle


def test_delay_20_ms_has_a_median_of_20_ms_and_a_little_more(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    result = run_load(LoadSpec(url=server.url + "/delay/20", connections=4, duration_seconds=1.0))
    assert result.errors == {}
    assert result.responses >= 40
    assert 20.0 <= result.latency.p50 <= 30.0  # the floor is physical; a busy machine adds wake-ups


def test_the_open_loop_shows_a_stall_the_closed_loop_hides(lab_server: Callable[..., ServerHandle]) -> None:
    """Coordinated omission: the closed loop stops sending while the server is frozen, so the
    stall touches one request per connection; the open loop charges every request that was
    due during the stall for its wait."""
    server = lab_server(stall_every_seconds=1.0, stall_ms=400.0)
    open_loop = run_load(LoadSpec(url=server.url + "/fast", mode="open", rate=1000.0,
                                  connections=10, duration_seconds=2.5))
    closed_loop = run_load(LoadSpec(url=server.url + "/fast", connections=10, duration_seconds=2.5))
    assert open_loop.errors == {} and closed_loop.errors == {}
    assert closed_loop.latency.max >= 200.0  # the stall happened during the closed loop too
    assert open_loop.latency.p99 >= 200.0
    assert closed_loop.latency.p99 <= open_loop.latency.p99 / 10
    # The uncorrected figure is reported beside it, and hides most of the stall.
    assert open_loop.latency_uncorrected is not None
    assert open_loop.latency_uncorrected.p99 < open_loop.latency.p99
    assert open_loop.late is not None and open_loop.late > 0
    # The open loop kept its schedule: all 2500 requests due were sent and answered. Its rate
    # is over the real time, which ends with the last answer: a stall that begins just before
    # the end of offering delays that by up to its 0.4 s.
    assert open_loop.responses == pytest.approx(2500, abs=2)
    assert 2500 / (2.5 + 0.45) <= open_loop.rps <= 1000 * 1.01


def test_nagle_with_split_writes_costs_a_delayed_ack(lab_server: Callable[..., ServerHandle]) -> None:
    nagle = lab_server(nodelay=False, split_writes=True)
    nodelay = lab_server(nodelay=True, split_writes=True)
    with_nagle = run_load(LoadSpec(url=nagle.url + "/fast", connections=1, duration_seconds=1.0))
    without = run_load(LoadSpec(url=nodelay.url + "/fast", connections=1, duration_seconds=1.0))
    assert with_nagle.latency.p50 >= 30.0
    assert without.latency.p50 < 5.0


def test_a_server_closing_every_n_requests_loses_nothing(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server(keepalive_max_requests=7)
    result = run_load(LoadSpec(url=server.url + "/fast", connections=4, duration_seconds=0.5))
    assert result.errors == {}
    served = server.stats()["requests"]
    assert len(result.samples) == result.responses == served
    reconnects = np.count_nonzero(result.samples["connect_ns"] != MISSING)
    assert reconnects >= served // 7 - 4  # each lane reopened its connection as it went


def test_a_killed_server_gives_counted_errors_and_a_result() -> None:
    server = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]  # "listening on http://127.0.0.1:PORT"
        run = start_load(LoadSpec(url=url + "/fast", connections=4, duration_seconds=1.5,
                                  timeout_seconds=1.0))
        while run.progress().requests < 1000:
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
        result = run.result(timeout=10)
    finally:
        server.kill()
        server.wait()
    assert result.responses >= 1000
    assert result.errors, "requests after the kill must be counted as errors"
    assert set(result.errors) <= {"connect_refused", "reset", "closed_by_server", "timeout"}
    assert result.requests == result.responses + sum(result.errors.values())


def test_a_background_run_reports_progress_and_stops_early(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    run = start_load(LoadSpec(url=server.url + "/delay/5", connections=2, duration_seconds=30))
    while run.progress().requests < 20:
        time.sleep(0.05)
    progress = run.progress()
    assert progress.phase == "running"
    assert 0 < progress.seconds_left < 30 and progress.rps > 0
    run.stop()
    result = run.result(timeout=5)
    assert result.stopped_early
    assert result.errors == {}
    assert result.responses >= 20 and result.duration_s < 10


def test_workers_split_the_rate_and_their_samples_merge(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    result = run_load(LoadSpec(url=server.url + "/fast", mode="open", rate=400.0, connections=4,
                               workers=2, duration_seconds=1.0, warmup_seconds=0.25))
    assert set(result.samples["worker"].tolist()) == {0, 1}
    assert result.requests == pytest.approx(400, abs=2)  # warm-up left out of the summary
    assert len(result.samples) == pytest.approx(500, abs=2)  # but kept in the samples
    intended = np.sort(result.samples["intended_ns"])
    gaps = np.diff(intended)  # the two workers' schedules interleave evenly
    assert np.median(gaps) == pytest.approx(2_500_000, rel=0.01)
    # the window runs to the last answer: a worker that finishes 50 ms late is -5 % already
    assert result.rps == pytest.approx(400, rel=0.15)


def test_max_requests_bounds_the_run(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    result = run_load(LoadSpec(url=server.url + "/fast", connections=3, duration_seconds=10,
                               max_requests=500))
    assert len(result.samples) == 500 and result.errors == {}
    assert result.duration_s < 5


def test_chunked_bodies_and_new_connections_per_request(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    result = run_load(LoadSpec(url=server.url + "/stream/3", connections=2, keepalive=False,
                               duration_seconds=0.5))
    assert result.errors == {}
    assert result.responses > 0
    assert (result.samples["connect_ns"] != MISSING).all()
    assert (result.samples["first_byte_ns"] < result.samples["done_ns"]).all()  # 20 ms of chunks
    assert result.latency.p50 >= 20.0


def test_calibration_reports_the_generators_own_latency(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    result = run_load(LoadSpec(url=server.url + "/fast", connections=1, max_requests=100),
                      calibrate=True)
    assert result.calibration is not None
    assert 0 < result.calibration.baseline_p50_us < result.calibration.generator_p99_us
    assert result.to_json_dict()["calibration"]["added_p50_us"] == result.calibration.added_p50_us
    assert (result.samples["error"] == ErrorKind.NONE).all()


def test_a_notebook_awaits_the_run_on_its_own_loop(lab_server: Callable[..., ServerHandle]) -> None:
    """The kernel's loop keeps turning while the load runs in its own processes."""
    server = lab_server()
    seen: list[LoadProgress] = []
    ticks = 0

    async def notebook_cell() -> LoadResult:
        nonlocal ticks
        run = start_load(LoadSpec(url=server.url + "/fast", connections=2, duration_seconds=0.6))
        waiting = asyncio.ensure_future(run.wait(interval=0.05, on_progress=seen.append))
        while not waiting.done():
            ticks += 1  # other cells' work goes on
            await asyncio.sleep(0.01)
        return await waiting

    result = asyncio.run(notebook_cell())
    assert result.responses > 0 and ticks >= 30
    assert seen[-1].phase == "done" and seen[-1].seconds_left == 0
    assert any(p.phase == "running" and p.requests > 0 for p in seen)


def test_several_paths_are_requested_in_turn(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    result = run_load(LoadSpec(url=server.url, paths=("/fast", "/bytes/100"), connections=1,
                               max_requests=10))
    assert result.errors == {}
    sizes = result.samples["response_bytes"].tolist()
    assert len(set(sizes)) == 2 and sizes[0::2] == [sizes[0]] * 5 and sizes[1::2] == [sizes[1]] * 5


def test_a_post_body_is_sent_and_echoed(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    short = run_load(LoadSpec(url=server.url + "/echo", method="POST", body="x", max_requests=5))
    long = run_load(LoadSpec(url=server.url + "/echo", method="POST", body="x" * 1001, max_requests=5))
    assert short.errors == {} == long.errors
    assert (long.samples["response_bytes"] - short.samples["response_bytes"] >= 1000).all()


def test_a_result_becomes_a_record(lab_server: Callable[..., ServerHandle], tmp_path: Path) -> None:
    """The pieces a record needs are plain: samples, the spec, the server config."""
    config = ServerConfig()
    server = lab_server()
    result = run_load(LoadSpec(url=server.url + "/fast", mode="open", rate=200.0, max_requests=50))
    store = RecordStore(tmp_path)
    record = save_run(samples=result.samples, load_spec=result.spec, server_config=config,
                      name="loadgen", store=store)
    loaded = store.load(record.id)
    assert len(loaded.samples) == 50
    assert from_dict(LoadSpec, loaded.load_spec) == result.spec


def test_a_run_dropped_unread_takes_its_workers_with_it(lab_server: Callable[..., ServerHandle]) -> None:
    import gc

    from lab.loadgen import start_load

    server = lab_server()
    run = start_load(LoadSpec(url=server.url + "/fast", connections=2, duration_seconds=30))
    processes = list(run._processes)
    assert all(process.is_alive() for process in processes)
    del run
    gc.collect()
    for process in processes:
        process.join(10)
        assert not process.is_alive()

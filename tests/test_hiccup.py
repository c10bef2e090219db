"""The hiccup meter: a pause of the server's loop shows in its series, at the time the requests
that waited for it came back and about as long; a slow handler that awaits does not show."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rawhttp import Reader, connect, get

from lab.http.config import ServerConfig
from lab.measure.hiccup import hiccup_summary, largest_hiccups
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

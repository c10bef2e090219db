"""wrk runner and parser: real runs against nginx on 127.0.0.1, plus stored real wrk output."""

from __future__ import annotations

import contextlib
import math
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.peers.pinning import server_and_load_cores
from lab.peers.servers import PeerUnavailable, free_port, start_peer
from lab.peers.wrk import (
    PERCENTILES,
    WrkError,
    WrkLoad,
    WrkNotFound,
    byte_count,
    check_target,
    find_wrk,
    metric,
    parse_output,
    run_wrk,
    time_ms,
)

pytestmark = pytest.mark.peers

SAMPLES = Path(__file__).parent / "wrk_samples"
DISTINCT_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "distinct_requests.lua"
DISTINCT_CYCLE = 100_000  # requests the script builds per wrk thread before it repeats
SERVER_CORES, LOAD_CORES = server_and_load_cores()
SHORT_LOAD = WrkLoad(threads=1, connections=4, duration_s=1)
OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


@pytest.fixture(scope="module")
def wrk_binary() -> str:
    try:
        return find_wrk()
    except WrkNotFound as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def nginx_url(wrk_binary: str) -> Iterator[str]:
    try:
        peer = start_peer("nginx", cores=SERVER_CORES)
    except PeerUnavailable as missing:
        pytest.skip(str(missing))
    with peer:
        yield peer.fast_url


class HeadRecorder:
    """A loopback server that answers ``OK`` to every request and keeps each request head.

    wrk sends one request per connection at a time (no pipelining without a script that
    asks for it), so a head is answered before the next one arrives.
    """

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                connection, _ = self._listener.accept()
                threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            pending = b""
            while data := connection.recv(65536):
                pending += data
                while b"\r\n\r\n" in pending:
                    head, _, pending = pending.partition(b"\r\n\r\n")
                    self.heads.append(head)
                    connection.sendall(OK_RESPONSE)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def head_recorder(wrk_binary: str) -> Iterator[HeadRecorder]:
    recorder = HeadRecorder()
    yield recorder
    recorder.close()


# --- real runs ---------------------------------------------------------------------------

def test_a_real_run_against_nginx_parses_into_consistent_numbers(nginx_url: str) -> None:
    result = run_wrk(nginx_url, SHORT_LOAD, cores=LOAD_CORES)
    assert (result.url, result.threads, result.connections) == (nginx_url, 1, 4)
    assert result.requests > 100
    assert result.errors_total == 0
    assert result.duration_s == pytest.approx(1.0, abs=0.5)
    # wrk's Requests/sec is its own requests / duration; the printed duration has 2 decimals.
    assert result.requests_per_s == pytest.approx(result.requests / result.duration_s, rel=0.02)
    assert set(result.percentiles_ms) == set(PERCENTILES)
    p50, p75, p90, p99 = (result.percentile_ms(p) for p in PERCENTILES)
    assert 0 < p50 <= p75 <= p90 <= p99 <= result.latency_max_ms
    assert 0 < result.latency_avg_ms <= result.latency_max_ms
    assert result.bytes_read > result.requests * 2  # every response carries at least "OK"
    assert "Requests/sec" in result.output


def test_without_latency_flag_there_are_no_percentiles(nginx_url: str) -> None:
    result = run_wrk(nginx_url, WrkLoad(threads=1, connections=2, duration_s=1, latency=False))
    assert result.percentiles_ms == {}
    with pytest.raises(KeyError, match="latency=True"):
        result.percentile_ms(99)


def test_the_distinct_requests_script_runs_and_parses(nginx_url: str) -> None:
    result = run_wrk(nginx_url, WrkLoad(threads=1, connections=4, duration_s=1, script=DISTINCT_SCRIPT),
                     cores=LOAD_CORES)
    assert result.url == nginx_url
    assert result.requests > 100
    assert result.errors_total == 0  # nginx answered every one of them with 200
    assert set(result.percentiles_ms) == set(PERCENTILES)


def test_the_distinct_requests_script_sends_distinct_well_formed_requests(
        head_recorder: HeadRecorder) -> None:
    url = f"http://127.0.0.1:{head_recorder.port}/fast"
    result = run_wrk(url, WrkLoad(threads=1, connections=2, duration_s=1, script=DISTINCT_SCRIPT))
    heads = list(head_recorder.heads)
    assert 0 < result.requests <= len(heads)
    # What wrk sends without a script, plus one header of fixed width: the same size every time.
    shape = re.compile(rb"GET /fast HTTP/1\.1\r\nHost: 127\.0\.0\.1:%d\r\nX-Id: (\d{5})"
                       % head_recorder.port)
    ids = []
    for head in heads:
        match = shape.fullmatch(head)
        assert match is not None, head
        ids.append(match[1])
    # One wrk thread walks the cycle in order: nothing repeats before 100,000 requests.
    assert len(set(ids)) == min(len(ids), DISTINCT_CYCLE)


def test_headers_reach_every_request(head_recorder: HeadRecorder) -> None:
    url = f"http://127.0.0.1:{head_recorder.port}/fast"
    run_wrk(url, WrkLoad(threads=1, connections=1, duration_s=1, headers=("Connection: close",)))
    heads = list(head_recorder.heads)
    assert heads and all(b"Connection: close" in head.split(b"\r\n")[1:] for head in heads), heads[:2]


def test_wrk_failing_to_connect_is_a_clear_error(wrk_binary: str) -> None:
    nobody_listens = f"http://127.0.0.1:{free_port()}/fast"
    with pytest.raises(WrkError, match="unable to connect"):
        run_wrk(nobody_listens, SHORT_LOAD)


def test_missing_wrk_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("lab.peers.wrk.WRK_BINARY", str(tmp_path / "no-wrk-here"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WrkNotFound, match="install Debian's wrk package"):
        run_wrk("http://127.0.0.1:1/fast", SHORT_LOAD)


# --- stored real output ------------------------------------------------------------------

def test_milliseconds_two_threads_and_plain_req_per_sec() -> None:
    result = parse_output(sample("delay_5ms_two_threads.txt"))
    assert (result.threads, result.connections, result.requests) == (2, 8, 1433)
    assert (result.latency_avg_ms, result.latency_stdev_ms, result.latency_max_ms) == (5.57, 1.09, 16.06)
    assert result.latency_within_stdev_percent == 92.18
    assert result.percentiles_ms == {50.0: 5.35, 75.0: 5.53, 90.0: 5.81, 99.0: 11.15}
    assert result.thread_requests_per_s_avg == 719.20
    assert result.requests_per_s == 1432.41
    assert result.bytes_read == pytest.approx(212.71 * 1024)
    assert result.transfer_bytes_per_s == pytest.approx(212.62 * 1024)
    assert result.errors_total == 0


def test_seconds_unit_and_bytes_unit() -> None:
    result = parse_output(sample("delay_1200ms_seconds_unit.txt"))
    assert result.latency_avg_ms == pytest.approx(1200.0)
    assert result.latency_stdev_ms == pytest.approx(0.47084)
    assert result.percentile_ms(99) == pytest.approx(1200.0)
    assert result.duration_s == pytest.approx(3.01)
    assert result.bytes_read == 620.0


def test_timeouts_with_nothing_recorded() -> None:
    result = parse_output(sample("all_timed_out.txt"))
    assert result.socket_errors.timeout == 4
    assert result.socket_errors.total == 4
    assert math.isnan(result.latency_within_stdev_percent)  # wrk printed "-nan%"
    assert result.latency_max_ms == 0.0


def test_non_2xx_count_without_latency_flag() -> None:
    result = parse_output(sample("not_found_no_latency_flag.txt"))
    assert result.non_2xx_or_3xx == result.requests == 16689
    assert result.percentiles_ms == {}
    assert result.errors_total == 16689


def test_read_and_write_socket_errors_and_k_suffix() -> None:
    result = parse_output(sample("server_stopped_mid_run.txt"))
    errors = result.socket_errors
    assert (errors.connect, errors.read, errors.write, errors.timeout) == (0, 20, 234579, 0)
    assert result.thread_requests_per_s_avg == pytest.approx(179_960)
    assert result.latency_avg_ms == pytest.approx(0.14366)
    assert result.percentile_ms(50) == pytest.approx(0.087)


def test_connect_socket_errors() -> None:
    result = parse_output(sample("fd_limit_connect_errors.txt"))
    assert result.socket_errors.connect == 24
    assert result.requests_per_s == 219716.29


@pytest.mark.parametrize(("text", "milliseconds"), [
    ("363.57us", 0.36357), ("5.35ms", 5.35), ("1.20s", 1200.0), ("2.00m", 120_000.0), ("1.00h", 3_600_000.0),
])
def test_time_units(text: str, milliseconds: float) -> None:
    assert time_ms(text) == pytest.approx(milliseconds)


def test_count_and_byte_units() -> None:
    assert metric("130.02k") == pytest.approx(130_020)
    assert metric("1.50M") == pytest.approx(1_500_000)
    assert metric("767.00") == 767.0
    assert byte_count("1.00KB") == 1024
    assert byte_count("143.14MB") == pytest.approx(143.14 * 1024**2)


def test_unknown_unit_and_garbage_are_clear_errors() -> None:
    with pytest.raises(WrkError, match="unknown time unit 'days'"):
        time_ms("3.00days")
    with pytest.raises(WrkError, match="no Latency line"):
        parse_output("Running 1s test @ http://127.0.0.1:1/\n  1 threads and 1 connections\n")


# --- guards ------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://10.1.2.3/fast", "http://example.com/", "http://[2001:db8::1]/"])
def test_non_loopback_targets_are_refused_without_opt_in(url: str) -> None:
    with pytest.raises(ValueError, match="allow_remote=True"):
        run_wrk(url, SHORT_LOAD)
    check_target(url, allow_remote=True)  # the explicit opt-in passes the guard


def test_loopback_targets_pass() -> None:
    for url in ("http://127.0.0.1:8080/", "http://localhost:1/", "http://[::1]:80/", "http://127.5.0.1/"):
        check_target(url)


@pytest.mark.parametrize(("knobs", "message"), [
    ({"threads": 4, "connections": 2}, "connections"),
    ({"duration_s": 0}, "duration_s"),
    ({"duration_s": 1.5}, "duration_s"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"script": Path("/no/such/script.lua")}, "script: no wrk Lua script at /no/such/script.lua"),
])
def test_bad_loads_name_the_knob(knobs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WrkLoad(**knobs)


def test_the_run_is_bounded() -> None:
    load = WrkLoad(duration_s=3, timeout_s=2)
    assert load.bound_s < 3 + 2 + 30
    assert "--duration=3s" in load.arguments()


def test_a_script_is_passed_to_wrk() -> None:
    assert f"--script={DISTINCT_SCRIPT}" in WrkLoad(script=DISTINCT_SCRIPT).arguments()
    assert not any(argument.startswith("--script") for argument in WrkLoad().arguments())

"""The generator on ``ws://`` targets: one sample row per message round trip.

The server runs in its own process, as whenever figures matter; bounds on times are generous
and only for physical effects (Nagle's ~40 ms).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from lab.errors import ConfigError
from lab.loadgen import LoadSpec, run_load
from lab.measure.samples import MISSING, ErrorKind
from lab.server import ServerHandle


def ws_url(server: ServerHandle, path: str = "/ws/echo") -> str:
    return server.url.replace("http://", "ws://") + path


def bench_json(*argv: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "lab", "bench", *argv, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.timing
def test_bench_echo_on_four_connections(lab_server: Callable[..., ServerHandle]) -> None:
    report = bench_json(ws_url(lab_server()), "--connections", "4", "--duration", "2")
    assert report["errors"] == {}
    assert report["requests"] > 2000
    assert report["status_codes"] == {"101": report["requests"]}
    assert report["latency_ms"]["p50"] < 5


@pytest.mark.timing
def test_bench_shows_nagle_on_split_frame_writes(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server(nodelay=False, split_writes=True)
    report = bench_json(ws_url(server), "--connections", "1", "--duration", "2")
    assert report["errors"] == {}
    assert report["latency_ms"]["p50"] >= 30


def test_every_round_trip_is_one_sample_with_its_size(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    result = run_load(LoadSpec(url=ws_url(server), connections=2, max_requests=300,
                               duration_seconds=10, message_bytes=200, message_type="binary"))
    samples = result.samples
    assert samples.size == 300 and result.errors == {}
    assert np.all(samples["status"] == 101)
    assert np.all(samples["response_bytes"] == 200 + 4)  # header: 2 bytes + 16-bit length (>125)
    assert np.all(samples["done_ns"] >= samples["sent_ns"])
    assert server.stats()["requests"] == 300  # the server saw each message once


def test_open_loop_reconnects_after_an_idle_close_and_times_the_handshake(
        lab_server: Callable[..., ServerHandle]) -> None:
    # The server closes a connection idle for 0.1 s; at 2 messages/s on one connection each
    # message finds it closed, so each opens a new connection and upgrades it first. The
    # 0.4 s between the close and the next message keeps a busy machine's delays from
    # sending one just as the server closes (which is counted, rightly, as closed_by_server).
    server = lab_server(ws_idle_timeout_seconds=0.1)
    result = run_load(LoadSpec(url=ws_url(server), mode="open", rate=2.0, connections=1,
                               duration_seconds=2.0))
    samples = result.samples
    assert result.errors == {}
    assert np.all(samples["intended_ns"] != MISSING)
    # the first message's connect was made before the run (not in its latency): the rest waited
    reconnected = samples[1:][samples[1:]["connect_ns"] != MISSING]
    assert reconnected.size >= 3
    # The connect time is the TCP connect plus the opening handshake, inside the latency.
    assert np.all(reconnected["connect_ns"] > 0)
    assert np.all(reconnected["connect_ns"] < reconnected["done_ns"] - reconnected["intended_ns"])


def test_a_message_over_the_server_limit_fails_as_closed_by_server(
        lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server(ws_max_message_bytes=100)
    result = run_load(LoadSpec(url=ws_url(server), connections=1, max_requests=3,
                               duration_seconds=5, message_bytes=101))
    assert result.summary.succeeded == 0
    assert set(np.unique(result.samples["error"])) == {ErrorKind.CLOSED_BY_SERVER}
    assert server.stats()["errors"]["ws_close_1009"] >= 1


def test_compression_both_ways_when_the_server_takes_it(lab_server: Callable[..., ServerHandle]) -> None:
    plain, deflating = lab_server(), lab_server(ws_compression=True)
    runs = {name: run_load(LoadSpec(url=ws_url(server), connections=1, max_requests=50,
                                    duration_seconds=10, message_bytes=4000, ws_compression=True))
            for name, server in (("plain", plain), ("deflating", deflating))}
    assert runs["plain"].errors == {} and runs["deflating"].errors == {}
    # 4000 bytes of a repeated 16-byte pattern deflate to a few dozen.
    assert runs["plain"].samples["response_bytes"].min() > 4000
    assert runs["deflating"].samples["response_bytes"].max() < 200


def test_a_refused_upgrade_is_a_connect_error(lab_server: Callable[..., ServerHandle]) -> None:
    server = lab_server()
    result = run_load(LoadSpec(url=ws_url(server, "/fast"), connections=1, duration_seconds=0.3))
    assert result.summary.succeeded == 0
    assert set(result.errors) == {"connect_error"}


@pytest.mark.parametrize("changes", [{"paths": ("/a",)}, {"keepalive": False}, {"method": "POST"}])
def test_load_spec_refuses_what_a_ws_run_cannot_do(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as error:
        LoadSpec(url="ws://127.0.0.1:1/ws/echo", **changes)
    assert error.value.option == "url"


def test_load_spec_takes_wss_as_a_websocket_over_tls() -> None:
    target = LoadSpec(url="wss://127.0.0.1/ws/echo").target
    assert target.websocket and target.tls and target.port == 443
    with pytest.raises(ConfigError, match="only http://, https://, ws:// and wss://"):
        LoadSpec(url="wsx://127.0.0.1:1/ws/echo")


def test_calibration_is_refused_for_ws_rather_than_shown_beside_it() -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "bench", "ws://127.0.0.1:1/ws/echo",
                           "--calibrate", "-d", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--calibrate: measures the HTTP path only" in done.stderr

"""A closed loop with think time: each connection is a user who pauses between an answer and
the next request (``think_ms``, ``--think``), and the queueing model that predicts it."""

from __future__ import annotations

import time

import pytest

import lab
from lab.errors import ConfigError
from lab.measure.queueing import interactive_response_ms
from lab.server import ServerHandle


def test_think_time_paces_each_connection(server: ServerHandle) -> None:
    # 8 users going round in ~200 ms of thinking (and well under 1 ms of request) for 2 s:
    # ~80 requests, a Poisson count with a standard deviation of ~9. Without think time the
    # same run sends tens of thousands.
    result = lab.run_load(lab.LoadSpec(url=f"{server.url}/fast", connections=8, think_ms=200,
                                       duration_seconds=2))
    assert 45 <= result.requests <= 125, result.requests
    assert not result.errors
    # The pause is not latency: a think time's own median is 139 ms.
    assert result.latency.p50 < 50


def test_a_run_ends_on_time_while_its_users_think(server: ServerHandle) -> None:
    began = time.monotonic()
    result = lab.run_load(lab.LoadSpec(url=f"{server.url}/fast", connections=4, think_ms=60_000,
                                       duration_seconds=0.5))
    assert time.monotonic() - began < 5  # the minute-long pauses were cancelled, not waited for
    assert result.requests <= 4


def test_think_time_belongs_to_the_closed_loop() -> None:
    with pytest.raises(ConfigError, match=r"think_ms.*closed loop only"):
        lab.LoadSpec(url="http://127.0.0.1:9/", mode="open", rate=100, think_ms=5)


def test_mean_value_analysis_meets_both_asymptotes() -> None:
    assert interactive_response_ms(1, 2.0, 30.0) == 2.0  # one user never waits
    # Far past the knee (S + Z) / S = 11 the server is always busy: R = N S - Z.
    assert interactive_response_ms(200, 1.0, 10.0) == pytest.approx(190.0, rel=1e-3)
    # Without think time every user is always in the queue: R = N S exactly.
    assert interactive_response_ms(7, 3.0, 0.0) == pytest.approx(21.0)
    # At the knee the response time is well above S but below N S.
    assert 1.0 < interactive_response_ms(11, 1.0, 10.0) < 11.0
    with pytest.raises(ConfigError):
        interactive_response_ms(0, 1.0, 10.0)


def test_the_report_says_the_connections_think(server: ServerHandle) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "lab", "bench", f"{server.url}/fast", "-c", "2",
                           "--think", "20", "-d", "0.5"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "closed loop, each connection thinking 20 ms on average between requests" in done.stdout

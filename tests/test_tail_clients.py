"""The tail-at-scale clients (lab/notebook/tail.py) against the real server's slow /delay."""

from __future__ import annotations

import asyncio

import pytest

from lab.errors import ConfigError
from lab.notebook.tail import fan_out, hedged_requests


def test_a_round_waits_for_its_slowest_leg(server):
    # every leg slow: each round takes the slow wait; none slow: none does
    slow = asyncio.run(fan_out(server.url + "/delay/0?slow_percent=100&slow_ms=40", 5, 3))
    assert slow.shape == (3, 5) and (slow >= 39).all()
    fast = asyncio.run(fan_out(server.url + "/delay/0?slow_percent=0&slow_ms=40", 5, 3))
    assert (fast.max(axis=1) < 39).all()


def test_a_hedge_wins_when_the_first_copy_is_slow(server):
    # half the requests wait 300 ms; a copy after 20 ms is fast half the time, so of 20
    # logical requests nearly all finish well before 300 ms (both slow: 1 in 4)
    url = server.url + "/delay/0?slow_percent=50&slow_ms=300"
    run = asyncio.run(hedged_requests(url, 20, hedge_after_ms=20))
    assert run.hedges >= 3  # about half the first copies were slow
    assert (run.latency_ms < 250).sum() >= 8  # binomial(20, 0.75): fewer is 1 in 3000
    plain = asyncio.run(hedged_requests(url, 5, hedge_after_ms=None))
    assert plain.hedges == 0 and plain.extra_load == 0


def test_bad_arguments_name_the_knob():
    with pytest.raises(ConfigError, match="fanout"):
        asyncio.run(fan_out("http://127.0.0.1:9/", 0, 1))
    with pytest.raises(ConfigError, match="hedge_after_ms"):
        asyncio.run(hedged_requests("http://127.0.0.1:9/", 1, hedge_after_ms=-1))
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(fan_out("http://192.0.2.1:80/", 1, 1))

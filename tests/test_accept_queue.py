"""The accept-queue tools (lab/notebook/accept.py): a blocked server, a burst of connects."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from lab.errors import ConfigError
from lab.notebook.accept import block_server_loop, connect_burst, netstat_counters, syn_retry_seconds, sysctl
from lab.notebook.sockdiag import listen_queue


def test_the_syn_retry_schedule_follows_the_kernel():
    retries = syn_retry_seconds(6)
    assert retries[0] == 1.0  # RFC 6298's initial retransmission timeout
    linear = sysctl("ipv4.tcp_syn_linear_timeouts", default=0) or 0
    assert retries[1] == (2.0 if linear else 3.0)
    assert all(later > earlier for earlier, later in itertools.pairwise(retries))


@pytest.mark.timing
def test_a_full_accept_queue_sends_connects_to_the_syn_retry(make_server):
    server = make_server(isolation="process", backlog=1)
    hold = block_server_loop(server.url, 400)

    async def burst():
        await asyncio.sleep(0.05)
        task = asyncio.ensure_future(connect_burst(server.url + "/fast", 8, timeout_seconds=4))
        await asyncio.sleep(0.15)
        return listen_queue(server.port), await task

    try:
        queue, connections = asyncio.run(burst())
    finally:
        hold.close()
    assert queue.limit == 1 and queue.waiting == 2  # "full" means more than the backlog
    # A connect that never completed (nan) waited longer than any that did.
    connect_ms = sorted(math.inf if math.isnan(c.connect_ms) else c.connect_ms for c in connections)
    # Two fit at once; the other SYNs were dropped and sent again after the 1 s timer. A lower
    # bound, not a window around 1 s: a busy machine may push a retried SYN to the next retry,
    # never before the first (the server accepted again after 0.4 s).
    assert sum(ms < 100 for ms in connect_ms) <= 3, connect_ms
    assert all(ms >= 900 for ms in connect_ms[3:]), connect_ms


def test_netstat_counters_count_a_full_accept_queue_under_nstat_names(make_server):
    server = make_server(isolation="process", backlog=1)
    hold = block_server_loop(server.url, 300)
    try:
        before = netstat_counters()
        # The SYNs beyond the queue are dropped at once; nobody needs to wait for the retry.
        asyncio.run(connect_burst(server.url + "/fast", 8, timeout_seconds=0.5))
        after = netstat_counters()
    finally:
        hold.close()
    # Counters of the whole namespace: other traffic can only add to the difference.
    assert after["TcpExtListenOverflows"] - before["TcpExtListenOverflows"] >= 1
    assert after["TcpExtListenDrops"] >= after["TcpExtListenOverflows"]
    assert "TcpExtSyncookiesSent" in after and "IpExtInOctets" in after  # every group, nstat's names


@pytest.mark.timing
def test_a_big_accept_queue_takes_the_burst_while_the_server_is_blocked(make_server):
    server = make_server(isolation="process", backlog=128)
    hold = block_server_loop(server.url, 300)
    try:
        connections = asyncio.run(connect_burst(server.url + "/fast", 8, timeout_seconds=4))
    finally:
        hold.close()
    assert all(c.connect_ms < 100 for c in connections)
    assert all(c.outcome == "answered" and c.answer_ms >= 150 for c in connections)


def test_bad_arguments_name_the_knob():
    with pytest.raises(ConfigError, match="count"):
        asyncio.run(connect_burst("http://127.0.0.1:9/", 0))
    with pytest.raises(ConfigError, match="milliseconds"):
        block_server_loop("http://127.0.0.1:9/", 0)
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(connect_burst("http://192.0.2.1:80/", 1))

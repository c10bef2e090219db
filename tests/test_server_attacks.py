"""Hostile clients against ``python -m lab serve`` in a process of its own.

The server is pinned to one core; on the other, an attack (tests/attacks.py, niced) runs
beside a polite client -- the lab's own generator, ``bench --rate 400`` on ``/fast``. The
polite client must keep getting quick answers, and the server's memory (RSS from /proc) must
stay bounded while the attacker does its worst.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from rawhttp import GET_FAST, Reader, connect, get

from lab.peers.pinning import pinned_command, server_and_load_cores
from lab.peers.servers import Peer, start_peer
from lab.resources import resident_kib

pytestmark = pytest.mark.timing

MIB = 1024 * 1024
FAST_P99_LIMIT_MS = 10.0
BYSTANDER_RATE = 400
ATTACKS = Path(__file__).resolve().parent / "attacks.py"
SERVER_CORES, CLIENT_CORES = server_and_load_cores()


def rss_mb(pid: int) -> float:
    return resident_kib(pid) / 1024


@contextmanager
def lab_server(*flags: str) -> Iterator[Peer]:
    peer = start_peer("lab", cores=SERVER_CORES, extra_args=list(flags))
    try:
        yield peer
    finally:
        peer.stop()


def under_attack(server: Peer, attack: str, argument: str,
                 seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``attack`` while the polite client times /fast for ``seconds``; both results."""
    bystander = subprocess.Popen(
        pinned_command([sys.executable, "-m", "lab", "bench", server.fast_url, "--rate",
                        str(BYSTANDER_RATE), "--connections", "2", "--duration", str(seconds),
                        "--json"], CLIENT_CORES),
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # the generator's processes start and connect first
        attacker = subprocess.run(
            ["nice", "-n", "19", *pinned_command([sys.executable, str(ATTACKS), attack,
                                                  str(server.port), argument], CLIENT_CORES)],
            capture_output=True, text=True, timeout=60, check=True)
        output, _ = bystander.communicate(timeout=seconds + 60)
    finally:
        bystander.kill()
    return json.loads(attacker.stdout), json.loads(output)


def assert_served_quickly(polite: dict[str, Any]) -> None:
    assert not polite["errors"], polite["errors"]
    assert polite["requests"] >= 100, polite["requests"]
    assert polite["latency_ms"]["p99"] < FAST_P99_LIMIT_MS, polite["latency_ms"]


def test_large_bodies_do_not_stay_in_memory() -> None:
    with lab_server() as server:
        before = rss_mb(server.pid)
        seen, polite = under_attack(server, "large-bodies", str(64 * MIB), seconds=3)
        after = rss_mb(server.pid)
    assert seen["fetched"] >= 4
    assert after - before < 160, f"RSS {before:.0f} -> {after:.0f} MB after {seen['fetched']} answers"
    assert_served_quickly(polite)


@pytest.mark.parametrize("where", ["value", "name"])
def test_an_endless_header_is_cut_early(where: str) -> None:
    with lab_server() as server:
        before = rss_mb(server.pid)
        seen, polite = under_attack(server, "endless-header", where, seconds=3)
        grown = rss_mb(server.pid) - before
    assert seen["answers"] == ["HTTP/1.1 431 Request Header Fields Too Large"], seen
    assert seen["most_sent"] < MIB
    assert grown < 64
    assert_served_quickly(polite)


def test_a_trickled_body_is_ended_by_the_body_timeout() -> None:
    """One body byte every 3 s: each gap is longer than the 2 s body timeout."""
    with lab_server("--body-timeout", "2") as server:
        seen, polite = under_attack(server, "trickled-body", "3", seconds=4)
    assert seen["answer"] == "HTTP/1.1 408 Request Timeout", seen
    assert seen["ended_after"] < 6
    assert_served_quickly(polite)


def test_a_client_that_does_not_read_is_dropped_by_the_send_timeout() -> None:
    with lab_server("--send-timeout", "2") as server:
        before = rss_mb(server.pid)
        seen, polite = under_attack(server, "slow-reader", str(50 * MIB), seconds=4)
        grown = rss_mb(server.pid) - before
    assert not seen["still_established"]
    assert seen["dropped_after"] < 5
    assert grown < 64
    assert_served_quickly(polite)


def test_the_header_timeout_does_not_run_while_the_server_is_not_reading() -> None:
    """A fast pipelining client whose answers the server stops reading (back-pressure) gets
    every answer after a pause longer than the header timeout."""
    count, size = 600, 100_000
    with lab_server("--header-timeout", "1") as server, connect(server.port, timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sender = threading.Thread(target=sock.sendall, args=(get(f"/bytes/{size}") * count,))
        sender.start()
        time.sleep(3)  # three header timeouts long, not reading a byte
        reader = Reader(sock)
        answers = [reader.response() for _ in range(count)]
        sender.join(10)
    assert all(answer.status == 200 and len(answer.body) == size for answer in answers)


def test_over_capacity_a_client_that_already_sent_gets_503_not_a_reset() -> None:
    with lab_server("--max-connections", "1") as server, connect(server.port) as first:
        first.sendall(GET_FAST)
        Reader(first).response()
        with connect(server.port) as second:
            second.sendall(GET_FAST * 20)  # data the server will not read
            answer = Reader(second).response()
        assert answer.status == 503


def test_a_body_trickled_inside_every_gap_is_ended_by_the_minimum_rate() -> None:
    """One body byte every 0.5 s: no gap reaches the 10 s body timeout, so only the minimum
    rate (set from the command line) ends it; before it, the attacker's 15 s ran out unanswered."""
    with lab_server("--body-min-rate", "100", "--min-rate-grace", "1") as server:
        seen, polite = under_attack(server, "trickled-body", "0.5", seconds=4)
    assert seen["answer"] == "HTTP/1.1 408 Request Timeout", seen
    assert seen["ended_after"] < 5
    assert_served_quickly(polite)

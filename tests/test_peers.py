"""Peers on 127.0.0.1: each starts, answers OK over keep-alive, is pinned where asked, and
frees its port when stopped. Real processes, real sockets."""

from __future__ import annotations

import errno
import http.client
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from lab.peers.pinning import PinningError, server_and_load_cores
from lab.peers.servers import (
    LOOPBACK,
    PEER_NAMES,
    WEBSOCKET_PEERS,
    Peer,
    PeerError,
    PeerUnavailable,
    free_port,
    start_peer,
)

pytestmark = pytest.mark.peers

SERVER_CORES, _ = server_and_load_cores()
# The lab's demo routes serve /fast only; every other peer also answers / (the seed's wrk target).
PATHS = {name: ("/fast",) if name == "lab" else ("/fast", "/") for name in PEER_NAMES}


def start_or_skip(name: str, **options: Any) -> Peer:
    try:
        return start_peer(name, **options)
    except PeerUnavailable as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module", params=PEER_NAMES)
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    with start_or_skip(request.param, cores=SERVER_CORES) as started:
        yield started


@pytest.mark.parametrize("name", WEBSOCKET_PEERS)
def test_websocket_peers_echo_text_and_binary(name: str) -> None:
    with start_or_skip(name) as peer, ws_connect(peer.ws_echo_url, compression=None) as websocket:
        websocket.send("sixteen bytes...")
        assert websocket.recv(timeout=5) == "sixteen bytes..."
        websocket.send(b"\x00\x01\x02")
        assert websocket.recv(timeout=5) == b"\x00\x01\x02"


def test_answers_ok_on_its_paths(peer: Peer) -> None:
    connection = http.client.HTTPConnection(LOOPBACK, peer.port, timeout=5)
    try:
        for path in PATHS[peer.name]:
            connection.request("GET", path)
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"OK"), f"{peer.name} {path}"
    finally:
        connection.close()


def test_keeps_the_connection_alive(peer: Peer) -> None:
    connection = http.client.HTTPConnection(LOOPBACK, peer.port, timeout=5)
    try:
        connection.request("GET", "/fast")
        first = connection.getresponse()
        first.read()
        assert not first.will_close, f"{peer.name} closes after one response"
        socket_used = connection.sock
        connection.request("GET", "/fast")
        second = connection.getresponse()
        assert second.read() == b"OK"
        assert connection.sock is socket_used  # no reconnect happened
    finally:
        connection.close()


def test_runs_on_the_cores_it_was_pinned_to(peer: Peer) -> None:
    if SERVER_CORES is None:
        pytest.skip("one usable core: nothing to pin apart")
    assert os.sched_getaffinity(peer.pid) == set(SERVER_CORES)
    assert peer.url == f"http://127.0.0.1:{peer.port}"
    assert peer.fast_url.endswith("/fast")


def test_stop_ends_the_process_and_frees_the_port() -> None:
    peer = start_or_skip("nginx")
    pid, port = peer.pid, peer.port
    peer.stop()
    peer.stop()  # twice is harmless
    assert not peer.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=2).close()
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        listener.bind((LOOPBACK, port))


def test_context_manager_stops_the_lab_server() -> None:
    with start_or_skip("lab", extra_args=["--workers", "2"]) as peer:
        assert peer.running
    assert not peer.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, peer.port), timeout=2).close()


def test_a_peer_that_cannot_bind_fails_with_its_own_words() -> None:
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        taken_port = squatter.getsockname()[1]
        # uvicorn gives up at once; nginx retries bind() for about 3 s before it does.
        with pytest.raises(PeerError, match="exited") as failure:
            start_or_skip("uvicorn", port=taken_port)
    assert os.strerror(errno.EADDRINUSE).lower() in str(failure.value).lower()


def test_bad_extra_flags_reach_the_error_message() -> None:
    with pytest.raises(PeerError, match="workers"):
        start_or_skip("lab", extra_args=["--workers", "0"])


def test_unknown_peer_and_unknown_core_are_refused_before_starting() -> None:
    with pytest.raises(ValueError, match="unknown name 'apache'"):
        start_peer("apache")
    with pytest.raises(PinningError, match="not available here"):
        start_peer("nginx", cores=[4096])


def test_free_port_can_be_listened_on() -> None:
    port = free_port()
    with socket.socket() as listener:
        listener.bind((LOOPBACK, port))
        listener.listen()


def test_the_peer_benchmark_runs_end_to_end() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed: install Debian's wrk package")
    benchmark = Path(__file__).resolve().parent.parent / "benchmarks" / "server_vs_peers.py"
    completed = subprocess.run(
        [sys.executable, str(benchmark), "-c", "4", "-d", "1", "--warmup", "0", "--peers", "lab,nginx"],
        capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert "lab / nginx:" in completed.stdout
    assert "requests/s x" in completed.stdout

"""Peers on 127.0.0.1: each starts, answers OK over keep-alive, is pinned where asked, and
frees its port when stopped. Real processes, real sockets."""

from __future__ import annotations

import errno
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from lab import tls
from lab.peers.pinning import PinningError, server_and_load_cores
from lab.peers.servers import (
    LOOPBACK,
    PEER_NAMES,
    TLS_PEERS,
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
PATHS = {name: ("/fast",) if name in ("lab", "lab-tls") else ("/fast", "/") for name in PEER_NAMES}


@pytest.fixture(scope="module", autouse=True)
def tls_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The TLS peers' one certificate, made in a folder of this module (peers inherit it)."""
    folder = tmp_path_factory.mktemp("tls")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_TLS_DIR", str(folder))
        yield folder


def connection_to(peer: Peer) -> http.client.HTTPConnection:
    """HTTP, or HTTPS trusting the lab's CA for the TLS peers."""
    if peer.name in TLS_PEERS:
        return http.client.HTTPSConnection(LOOPBACK, peer.port, timeout=5, context=tls.client_context())
    return http.client.HTTPConnection(LOOPBACK, peer.port, timeout=5)


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
    connection = connection_to(peer)
    try:
        for path in PATHS[peer.name]:
            connection.request("GET", path)
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"OK"), f"{peer.name} {path}"
    finally:
        connection.close()


def test_keeps_the_connection_alive(peer: Peer) -> None:
    connection = connection_to(peer)
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
    assert peer.url == f"{'https' if peer.name in TLS_PEERS else 'http'}://127.0.0.1:{peer.port}"
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


@pytest.mark.parametrize("name", TLS_PEERS)
def test_tls_peers_serve_the_one_certificate(name: str) -> None:
    chain, _ = tls.server_certificate()
    with start_or_skip(name) as peer:
        raw = socket.create_connection((LOOPBACK, peer.port), timeout=5)
        with tls.client_context().wrap_socket(raw, server_hostname=LOOPBACK) as connection:
            der = connection.getpeercert(binary_form=True)
    assert der == ssl.PEM_cert_to_DER_cert(chain.read_text())


@pytest.mark.parametrize(("name", "resumes"), [("nginx-tls", True), ("nginx-tls-nocache", False)])
def test_nginx_session_cache_on_and_off(name: str, resumes: bool) -> None:
    with start_or_skip(name) as peer:
        client = tls.client_context()
        client.maximum_version = ssl.TLSVersion.TLSv1_2  # the session cache, not 1.3's tickets
        session = None
        reused = []
        for _ in range(2):
            raw = socket.create_connection((LOOPBACK, peer.port), timeout=5)
            with client.wrap_socket(raw, server_hostname=LOOPBACK, session=session) as connection:
                connection.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                while connection.recv(65536):
                    pass
                reused.append(connection.session_reused)
                session = connection.session
    assert reused == [False, resumes]


def test_the_tls_benchmark_runs_end_to_end() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed: install Debian's wrk package")
    benchmark = Path(__file__).resolve().parent.parent / "benchmarks" / "tls_vs_peers.py"
    completed = subprocess.run(
        [sys.executable, str(benchmark), "-c", "4", "-d", "1", "--warmup", "0", "--rounds", "1",
         "--scenarios", "keep-alive,full"], capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert "keep-alive  lab / uvicorn: x" in completed.stdout
    assert "requests per CPU second" in completed.stdout
    assert "full        lab / nginx: x" in completed.stdout


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

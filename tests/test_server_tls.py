"""serve --tls: each TLS knob read back from the client's side, the HTTP knobs under TLS,
WebSocket and hosted apps over TLS, and hostile clients, over real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from fakes import wait_for
from rawhttp import GET_FAST, GET_FAST_CLOSE, Reader, get
from websockets.sync.client import connect as ws_connect

from lab import tls
from lab.cli import main
from lab.errors import ConfigError
from lab.http.handshake import PLAIN_HTTP_ANSWER
from lab.netpath import missing_privilege
from lab.server import ServerHandle, start_server

Server = Callable[..., ServerHandle]
NAGLE_REQUESTS = 25
# A ClientHello's record header and the start of its body: the server waits for the rest
HALF_A_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


@pytest.fixture(scope="module", autouse=True)
def tls_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The lab's CA and certificates in a folder of this module (server processes inherit it)."""
    folder = tmp_path_factory.mktemp("tls")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_TLS_DIR", str(folder))
        yield folder


@pytest.fixture
def tls_server(make_server: Server) -> Server:
    return lambda **knobs: make_server(tls=True, **knobs)


def tls_connect(port: int, *, context: ssl.SSLContext | None = None, session: ssl.SSLSession | None = None,
                timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return (context or tls.client_context()).wrap_socket(raw, server_hostname="127.0.0.1", session=session)


def fetch(port: int, **connect: Any) -> tuple[ssl.SSLSocket, int]:
    """One /fast request on a new TLS connection: (the open connection, the status)."""
    connection = tls_connect(port, **connect)
    connection.sendall(GET_FAST)
    return connection, Reader(connection).response().status


# --- it serves, and each knob shows on the client's side ---------------------------------------

def test_serves_https_with_the_labs_certificate(tls_server: Server) -> None:
    server = tls_server()
    assert server.url == f"https://127.0.0.1:{server.port}"
    answer = httpx.get(f"{server.url}/fast", verify=tls.client_context())
    assert (answer.status_code, answer.text, answer.http_version) == (200, "OK", "HTTP/1.1")
    assert server.stats()["tls_handshakes"] == 1


def test_the_asyncio_loop_serves_tls_and_its_timeouts_too(tls_server: Server) -> None:
    server = tls_server(loop="asyncio", tls_handshake_timeout_seconds=0.3)
    connection, status = fetch(server.port)
    assert status == 200
    connection.close()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(HALF_A_HELLO)
        with contextlib.suppress(ConnectionResetError):
            read_all(sock)
    assert wait_for(lambda: server.stats()["errors"] == {"tls_handshake_timeout": 1}), server.stats()


def test_a_plain_server_speaks_no_tls(make_server: Server) -> None:
    server = make_server()
    assert server.url.startswith("http://")
    with pytest.raises(ssl.SSLError):
        fetch(server.port)


@pytest.mark.parametrize("version", tls.TLS_VERSIONS)
def test_negotiated_version_follows_the_knobs(tls_server: Server, version: str) -> None:
    server = tls_server(tls_min_version=version, tls_max_version=version)
    connection, status = fetch(server.port)
    assert (status, connection.version()) == (200, f"TLSv{version}")
    connection.close()


def test_min_version_refuses_an_older_client(tls_server: Server) -> None:
    server = tls_server(tls_min_version="1.3")
    client = tls.client_context()
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        fetch(server.port, context=client)
    assert wait_for(lambda: server.stats()["errors"].get("tls_handshake_failed") == 1)


@pytest.mark.parametrize(("alpn", "chosen"), [("http/1.1", "http/1.1"), ("", None)])
def test_alpn_follows_the_knob(tls_server: Server, alpn: str, chosen: str | None) -> None:
    server = tls_server(tls_alpn=alpn)
    client = tls.client_context()
    client.set_alpn_protocols(["h2", "http/1.1"])
    connection, _ = fetch(server.port, context=client)
    assert connection.selected_alpn_protocol() == chosen
    connection.close()


@pytest.mark.parametrize("key_type", tls.KEY_TYPES)
def test_certificate_key_type_follows_the_knob(tls_server: Server, key_type: str) -> None:
    server = tls_server(tls_key_type=key_type)
    connection, _ = fetch(server.port)
    der = connection.getpeercert(binary_form=True)
    assert der is not None
    assert tls.key_type_of(x509.load_der_x509_certificate(der).public_key()) == key_type
    connection.close()


def session_of_a_closed_connection(port: int, client: ssl.SSLContext) -> ssl.SSLSession:
    """The session of a connection the server closed (Connection: close), with TLS's
    close_notify: an unclean close would void it."""
    first = tls_connect(port, context=client)
    first.sendall(GET_FAST_CLOSE)
    Reader(first).response()
    session = first.session  # after the answer: TLS 1.3 sends tickets after the handshake
    first.close()
    assert session is not None
    return session


def resumes(port: int, client: ssl.SSLContext, session: ssl.SSLSession) -> bool:
    connection, status = fetch(port, context=client, session=session)
    assert status == 200
    resumed = connection.session_reused
    connection.close()
    return resumed


def resumed_on_the_second_connection(port: int) -> bool:
    client = tls.client_context()  # a session resumes only through the context that made it
    return resumes(port, client, session_of_a_closed_connection(port, client))


@pytest.mark.parametrize("version", tls.TLS_VERSIONS)
@pytest.mark.parametrize("tickets", [True, False])
def test_resumption_follows_session_tickets(tls_server: Server, version: str, tickets: bool) -> None:
    server = tls_server(tls_min_version=version, tls_max_version=version, tls_session_tickets=tickets)
    assert resumed_on_the_second_connection(server.port) is tickets


def test_user_certificate_is_served(tls_server: Server, tmp_path: Path) -> None:
    import trustme
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "chain.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert_file))
    issued.private_key_pem.write_to_path(str(key_file))
    server = tls_server(tls_cert_file=str(cert_file), tls_key_file=str(key_file))
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    connection, status = fetch(server.port, context=client)
    assert status == 200
    connection.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(server.port)  # the lab's CA did not sign it


# --- live changes ------------------------------------------------------------------------------

def test_reconfigure_reaches_new_connections_and_keeps_open_ones(tls_server: Server) -> None:
    server = tls_server()
    old, _ = fetch(server.port)
    server.reconfigure(tls_max_version="1.2")
    new, _ = fetch(server.port)
    assert (old.version(), new.version()) == ("TLSv1.3", "TLSv1.2")
    old.sendall(GET_FAST)
    assert Reader(old).response().status == 200
    old.close()
    new.close()


def test_a_change_to_another_knob_keeps_the_sessions(tls_server: Server) -> None:
    """The context is kept unless a TLS knob changes: a new one could resume nothing."""
    server = tls_server()
    client = tls.client_context()
    session = session_of_a_closed_connection(server.port, client)
    server.reconfigure(keepalive_timeout_seconds=7.0, nodelay=False)
    assert resumes(server.port, client, session)
    session = session_of_a_closed_connection(server.port, client)
    server.reconfigure(tls_alpn="")  # a TLS knob: a new context, which knows no session
    assert not resumes(server.port, client, session)


def test_a_bad_certificate_in_a_reconfigure_changes_nothing(tls_server: Server, tmp_path: Path) -> None:
    server = tls_server()
    with pytest.raises(ConfigError, match=r"^tls_cert_file: cannot read"):
        server.reconfigure(tls_cert_file=str(tmp_path / "missing.pem"), tls_key_file=str(tmp_path / "k"))
    assert server.config.tls_cert_file is None
    connection, status = fetch(server.port)
    assert status == 200
    connection.close()


# --- HTTP knobs and WebSocket under TLS ------------------------------------------------------------

def timed_tls_requests(port: int, count: int) -> list[float]:
    latencies = []
    with tls_connect(port) as connection:
        reader = Reader(connection)
        for _ in range(count):
            started = time.perf_counter()
            connection.sendall(GET_FAST)
            reader.response()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


@pytest.mark.timing
def test_nagle_with_split_writes_stalls_over_tls_too(tls_server: Server) -> None:
    """Each write is a TLS record of its own: the body's record waits for the ACK of the
    head's, as the bare body did over TCP."""
    server = tls_server(nodelay=False, split_writes=True)
    latencies = timed_tls_requests(server.port, NAGLE_REQUESTS)
    assert statistics.median(latencies) >= 30, latencies


@pytest.mark.timing
def test_nodelay_removes_the_split_write_stall_over_tls(tls_server: Server) -> None:
    server = tls_server(nodelay=True, split_writes=True)
    latencies = timed_tls_requests(server.port, NAGLE_REQUESTS)
    assert statistics.median(latencies) < 5, latencies


def test_keepalive_and_limits_work_under_tls(tls_server: Server) -> None:
    server = tls_server(keepalive=False, max_connections=1)
    connection, status = fetch(server.port)
    assert status == 200
    assert connection.recv(1) == b""  # closed after the answer, with TLS's close first
    connection.close()
    server.reconfigure(keepalive=True)
    holder, _ = fetch(server.port)  # open, between requests
    # Closed at accept, before a handshake: there is no TLS yet to send a 503 in
    with pytest.raises((ssl.SSLError, OSError)):
        fetch(server.port)
    assert server.stats()["errors"] == {"over_capacity": 1}
    holder.close()


def test_socket_knobs_read_back_through_tls(tls_server: Server) -> None:
    server = tls_server(nodelay=False, send_buffer_bytes=64 * 1024)
    with tls_connect(server.port) as connection:
        connection.sendall(get("/sockopts"))
        options = json.loads(Reader(connection).response().body)
    assert options["nodelay"] is False
    assert options["send_buffer_bytes"] == 128 * 1024  # the kernel doubles it


def test_websocket_echo_over_wss(tls_server: Server) -> None:
    server = tls_server()
    with ws_connect(f"wss://127.0.0.1:{server.port}/ws/echo", ssl=tls.client_context()) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=5) == b"\x00\x01"


async def scheme_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """Answers with the scope's scheme, over HTTP or WebSocket."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["scheme"].encode()})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": scope["scheme"]})
        await send({"type": "websocket.close"})


@pytest.mark.parametrize("tls_on", [True, False])
def test_a_hosted_app_is_told_the_scheme(make_server: Server, tls_on: bool) -> None:
    server = make_server(app=scheme_app, tls=tls_on)
    verify = tls.client_context()
    assert httpx.get(f"{server.url}/", verify=verify).text == ("https" if tls_on else "http")
    ws_url = f"{'wss' if tls_on else 'ws'}://127.0.0.1:{server.port}/"
    with ws_connect(ws_url, ssl=verify if tls_on else None) as ws:
        assert ws.recv(timeout=5) == ("wss" if tls_on else "ws")


def test_a_server_in_its_own_process_serves_tls(lab_server: Server) -> None:
    server = lab_server(tls=True, tls_max_version="1.2")
    connection, status = fetch(server.port)
    assert (status, connection.version()) == (200, "TLSv1.2")
    connection.close()


@pytest.mark.skipif(missing_privilege() is not None, reason=f"emulated path: {missing_privilege()}")
def test_https_through_an_emulated_path_checks_the_paths_address() -> None:
    """The certificate names the path's server address, so the client checks it as it would a
    real service's (the RTT counts over a 20 ms path are notebook 17's)."""
    with start_server(tls=True, path="delay=1ms") as server:
        assert server.path is not None
        assert server.url == f"https://{server.path.server_address}:{server.port}"
        answer = httpx.get(f"{server.url}/fast", verify=tls.client_context())
        assert answer.status_code == 200


# --- hostile clients -----------------------------------------------------------------------------

def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_plain_http_to_the_tls_port_gets_a_400_naming_https(tls_server: Server) -> None:
    server = tls_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(GET_FAST)
        answer = read_all(sock)
    assert answer == PLAIN_HTTP_ANSWER
    assert answer.startswith(b"HTTP/1.1 400 ") and b"https://" in answer
    assert server.stats()["errors"] == {"tls_plain_http": 1}
    assert fetch(server.port)[1] == 200


def test_httpx_with_an_http_url_reads_the_400(tls_server: Server) -> None:
    server = tls_server()
    answer = httpx.get(f"http://127.0.0.1:{server.port}/fast")
    assert answer.status_code == 400 and "https://" in answer.text


@pytest.mark.parametrize(("garbage", "kind"), [
    (b"\x00\x01garbage\r\n", "tls_not_tls"),
    (b"\x16\x03\x01\x00\x05hello" + b"\xff" * 32, "tls_handshake_failed"),  # a record, not a hello
])
def test_garbage_is_closed_and_counted(tls_server: Server, garbage: bytes, kind: str) -> None:
    server = tls_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(garbage)
        try:
            answer = read_all(sock)
        except ConnectionResetError:
            answer = b""
    assert b"HTTP" not in answer  # nothing in plain text; at most a TLS alert
    assert wait_for(lambda: server.stats()["errors"] == {kind: 1}), server.stats()["errors"]
    assert fetch(server.port)[1] == 200


@pytest.mark.parametrize("sent", [b"", HALF_A_HELLO])
def test_a_stalled_handshake_is_closed_at_the_timeout(tls_server: Server, sent: bytes) -> None:
    """Nothing at all, or half a hello: either way the connection ends at the deadline."""
    server = tls_server(tls_handshake_timeout_seconds=0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            read_all(sock)
        waited = time.monotonic() - started
    assert 0.25 <= waited < 3, waited
    assert wait_for(lambda: server.stats()["errors"] == {"tls_handshake_timeout": 1})
    assert server.stats()["handshaking"] == 0


def test_handshakes_under_way_count_against_max_connections(tls_server: Server) -> None:
    server = tls_server(max_connections=20)
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(50)]
    try:
        for sock in stalled:
            sock.sendall(HALF_A_HELLO)
        assert wait_for(lambda: server.stats()["errors"].get("over_capacity") == 30)
        assert server.stats()["handshaking"] == 20
    finally:
        for sock in stalled:
            sock.close()
    assert wait_for(lambda: server.stats()["handshaking"] == 0)
    assert fetch(server.port)[1] == 200


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_handshake_flood_is_bounded_and_others_are_served(lab_server: Server) -> None:
    """Stalled handshakes up to the limit, full handshakes from four threads: the server's
    memory stays bounded (about 56 KiB per stalled handshake, measured), the connections
    beyond the limit are closed at once, and a keep-alive client is answered all along."""
    limit = 300
    server = lab_server(tls=True, max_connections=limit)
    pid = server.pids[0]
    client, status = fetch(server.port)
    assert status == 200
    before = rss_kib(pid)
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(limit + 100)]
    stop = threading.Event()
    handshakes = [0]

    def flood() -> None:
        context = tls.client_context()
        while not stop.is_set():
            try:
                connection = tls_connect(server.port, context=context)
                connection.close()
                handshakes[0] += 1
            except (OSError, ssl.SSLError):
                pass  # over the limit: closed at accept

    threads = [threading.Thread(target=flood) for _ in range(4)]
    try:
        for sock in stalled:
            sock.sendall(HALF_A_HELLO)
        for thread in threads:
            thread.start()
        latencies = []
        for _ in range(50):
            started = time.perf_counter()
            client.sendall(GET_FAST)
            assert Reader(client).response().status == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
        grown_mib = (rss_kib(pid) - before) / 1024
        stats = server.stats()
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for sock in stalled:
            sock.close()
        client.close()
    assert stats["handshaking"] + stats["connections_open"] <= limit
    assert stats["errors"]["over_capacity"] >= 100
    assert grown_mib < limit * 100 / 1024, grown_mib  # under 100 KiB for each slot
    assert max(latencies) < 2.0, max(latencies)  # served all along, not starved


# --- mistakes: one line naming the flag -------------------------------------------------------------

def test_cli_names_the_flag_of_an_unreadable_certificate(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--tls", "--cert", str(tmp_path / "missing.pem"), "--key", str(tmp_path / "key.pem")])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("python -m lab serve: error: --cert: cannot read ") and "missing.pem" in error


@pytest.mark.parametrize(("arguments", "message"), [
    (["--tls", "--cert", "c.pem"], "--key: give the certificate and its key together"),
    (["--cert", "c.pem", "--key", "k.pem"], "--cert: a certificate is served only with --tls"),
    (["--tls", "--tls-min-version", "1.3", "--tls-max-version", "1.2"],
     "--tls-max-version: 1.2 is below tls_min_version 1.3"),
    (["--tls", "--tls-key-type", "dsa"], "--tls-key-type"),
])
def test_cli_tls_mistakes_are_one_line(arguments: list[str], message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", *arguments])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_tls_folder_chosen_after_the_forkserver_started_reaches_the_workers(tmp_path, monkeypatch):
    """Worker processes come from the forkserver, whose environment is the one it started with:
    the parent tells them where the lab's CA is, so they sign with the CA the client trusts."""
    with start_server(isolation="process") as plain:  # the forkserver runs from here on
        assert plain.port
    monkeypatch.setenv("LAB_TLS_DIR", str(tmp_path / "later"))
    with start_server(isolation="process", tls=True) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:
        assert wrapped.version() in ("TLSv1.2", "TLSv1.3")

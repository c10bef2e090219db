"""ASGI apps hosted by the lab's server (lab/http/asgi.py), over real sockets: hand-written
callables for the protocol's edge cases, and a real Starlette and FastAPI app driven by httpx,
websockets and the lab's own generator."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asgi_apps
import httpx
import pytest
from asgi_apps import BACKGROUND, EVENTS, RELEASE_BODY
from fakes import wait_for
from rawhttp import Reader, close_kind, connect, exchange, get
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from lab.errors import ServerError
from lab.http.asgi import BODY_HIGH_WATER_BYTES
from lab.loadgen import LoadSpec, run_load
from lab.server import ServerHandle, start_server

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
NAGLE_REQUESTS = 25
HostApp = Callable[..., ServerHandle]

GET_CHUNKS = b"GET /chunks HTTP/1.1\r\nHost: t\r\n\r\n"
GET_CHUNKS_HTTP10 = b"GET /chunks HTTP/1.0\r\n\r\n"
HEAD_CHUNKS = b"HEAD /chunks HTTP/1.1\r\nHost: t\r\n\r\n"
POST_CHUNKED = (b"POST /upload?x=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
NO_HOST = b"GET / HTTP/1.1\r\n\r\n"
GZIP_CODED = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"


@pytest.fixture
def host_app(make_server: Callable[..., ServerHandle]) -> HostApp:
    """A lab server in a thread of the test, hosting the given app."""
    return lambda app, **knobs: make_server(app=app, **knobs)


@pytest.fixture(autouse=True)
def _fresh_records() -> Iterator[None]:
    EVENTS.clear()
    BACKGROUND.clear()
    RELEASE_BODY.clear()
    yield
    RELEASE_BODY.set()  # an app still holding its body lets go before the server stops


# --- the HTTP scope and messages ---------------------------------------------------------------

def test_the_scope_is_the_one_uvicorn_gives(host_app: HostApp) -> None:
    server = host_app(asgi_apps.scope_app)
    answer = exchange(server.port, b"GET /a%20b/c?x=1&y HTTP/1.1\r\nHost: t\r\nX-Custom-Thing: V\r\n\r\n")
    scope = json.loads(answer.body)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (scope["http_version"], scope["method"], scope["scheme"]) == ("1.1", "GET", "http")
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/a b/c", "/a%20b/c", "x=1&y")
    assert scope["root_path"] == ""
    assert scope["headers"] == [["host", "t"], ["x-custom-thing", "V"]]  # names lower-cased
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == ["127.0.0.1", server.port]
    assert scope["messages"] == [{"type": "http.request", "body": "", "more_body": False}]


def test_a_chunked_request_body_sent_at_once_reaches_the_app_in_one_message(host_app: HostApp) -> None:
    server = host_app(asgi_apps.scope_app)
    scope = json.loads(exchange(server.port, POST_CHUNKED).body)
    assert scope["method"] == "POST"
    assert scope["messages"] == [{"type": "http.request", "body": "hello world", "more_body": False}]


def test_a_streamed_response_without_length_is_chunked(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    with connect(server.port) as sock:
        sock.sendall(GET_CHUNKS)
        answer = Reader(sock).response()
    assert answer.headers["transfer-encoding"] == "chunked"
    assert answer.headers["x-app"] == "yes"
    assert answer.body == b"one two three"


def test_a_streamed_response_to_http10_is_delimited_by_the_close(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    with connect(server.port) as sock:
        sock.sendall(GET_CHUNKS_HTTP10)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower() and b"content-length" not in head.lower()
    assert b"Connection: close" in head
    assert body == b"one two three"


def test_head_gets_the_headers_without_the_body(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    with connect(server.port) as sock:
        sock.sendall(HEAD_CHUNKS + b"HEAD /whole HTTP/1.1\r\nHost: t\r\n\r\n" + get("/after"))
        sock.settimeout(5)
        data = b""
        while data.count(b"HTTP/1.1 200") < 3 or not data.endswith(b"/after"):
            data += sock.recv(65536)
    first, second, third = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"\r\n\r\n") and b"one" not in first  # no chunks, not even the last one
    assert b"content-length: 6\r\n" in second and second.endswith(b"\r\n\r\n")
    assert third.endswith(b"\r\n\r\n/after")


def test_no_content_has_neither_body_nor_length(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    answer = exchange(server.port, get("/no-content"))
    assert answer.status == 204
    assert "content-length" not in answer.headers and "transfer-encoding" not in answer.headers


def test_an_apps_connection_close_is_honoured(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    with connect(server.port) as sock:
        sock.sendall(get("/close"))
        answer = Reader(sock).response()
        assert (answer.body, answer.headers["connection"]) == (b"bye", "close")
        assert close_kind(sock) == "fin"


def test_pipelined_requests_are_answered_in_order(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    with connect(server.port) as sock:
        sock.sendall(get("/slow") + GET_CHUNKS + get("/third"))
        reader = Reader(sock)
        bodies = [reader.response().body for _ in range(3)]
    assert bodies == [b"slow", b"one two three", b"/third"]


# --- request bodies in parts ------------------------------------------------------------------

def post_head(path: str, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n".encode()


def test_a_body_sent_in_parts_reaches_the_app_in_parts(host_app: HostApp) -> None:
    server = host_app(asgi_apps.body_app)
    with connect(server.port) as sock:
        sock.sendall(post_head("/parts", 12))
        for part in (b"aaaa", b"bbbb", b"cccc"):
            time.sleep(0.15)  # each part is its own read on the server
            sock.sendall(part)
        answer = Reader(sock).response()
    seen = json.loads(answer.body)
    assert seen["body"] == "aaaabbbbcccc"
    assert seen["parts"] == [[4, True], [4, True], [4, False]]


def test_a_chunked_body_sent_in_parts_reaches_the_app_in_parts(host_app: HostApp) -> None:
    server = host_app(asgi_apps.body_app)
    with connect(server.port) as sock:
        sock.sendall(post_head("/parts", None))
        for chunk in (b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"):
            time.sleep(0.15)
            sock.sendall(chunk)
        answer = Reader(sock).response()
        sock.sendall(get("/parts"))  # the connection reads on after a streamed body
        assert json.loads(Reader(sock).response().body)["parts"] == [[0, False]]
    seen = json.loads(answer.body)
    assert seen["body"] == "hello world"
    assert [more for _, more in seen["parts"]][-1] is False and len(seen["parts"]) >= 2


def test_the_server_stops_reading_a_body_the_app_does_not_take(host_app: HostApp) -> None:
    """Back-pressure: while the app does not take its body, the server reads no more than its
    high-water mark, and the client's sends stop in TCP's flow control; once the app reads,
    the rest flows, in messages no larger than the mark plus one read."""
    total = 16 * 1024 * 1024
    server = host_app(asgi_apps.body_app, max_body_bytes=2 * total, recv_buffer_bytes=64 * 1024)
    with connect(server.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(post_head("/held", total))
        chunk = b"z" * 65536
        sent = 0
        sock.settimeout(0.5)
        try:
            while sent < total:
                sent += sock.send(chunk[:total - sent])
        except TimeoutError:
            pass  # the kernel's buffers are full: the server has stopped reading
        # Buffers: the client's and the server's socket, the app's 64 KiB mark and one read.
        assert sent < 2 * 1024 * 1024, f"{sent:,} bytes went in while the app took none"
        RELEASE_BODY.set()
        sock.settimeout(10)
        while sent < total:
            sent += sock.send(chunk[:total - sent])
        answer = Reader(sock).response()
    parts = json.loads(answer.body)["parts"]
    assert sum(length for length, _ in parts) == total
    assert max(length for length, _ in parts) <= BODY_HIGH_WATER_BYTES + 64 * 1024
    assert len(parts) > 10


def test_the_app_hears_of_a_client_that_went_away_mid_body(host_app: HostApp) -> None:
    server = host_app(asgi_apps.body_app)
    with connect(server.port) as sock:
        sock.sendall(post_head("/parts", 1000) + b"x" * 100)
        time.sleep(0.2)  # the app has the first part and waits in receive() for more
    assert wait_for(lambda: EVENTS == ["http.disconnect after 1 parts"]), EVENTS


def test_a_chunked_body_over_the_limit_midway_is_a_413_and_the_app_hears_disconnect(
        host_app: HostApp) -> None:
    server = host_app(asgi_apps.body_app, max_body_bytes=1000)
    with connect(server.port) as sock:
        sock.sendall(post_head("/parts", None) + b"100\r\n" + b"x" * 256 + b"\r\n")
        time.sleep(0.2)  # the app has the first 256 bytes
        sock.sendall(b"400\r\n" + b"y" * 1024 + b"\r\n")  # past 1000 in all
        answer = Reader(sock).response()
        assert answer.status == 413
        assert close_kind(sock) == "fin"
    assert wait_for(lambda: EVENTS == ["http.disconnect after 1 parts"]), EVENTS
    assert server.stats()["errors"] == {"body_too_large": 1}


def test_an_app_that_answers_without_reading_its_body_keeps_the_connection(host_app: HostApp) -> None:
    server = host_app(asgi_apps.body_app)
    body = b"q" * (1024 * 1024)  # far more than the high-water mark: dropped, not held
    with connect(server.port) as sock:
        sock.sendall(post_head("/ignore", len(body)) + body + get("/parts"))
        reader = Reader(sock)
        assert reader.response().body == b"ignored"
        assert json.loads(reader.response().body)["parts"] == [[0, False]]


def test_an_app_that_ignores_a_whole_body_it_held_back_keeps_the_connection(host_app: HostApp) -> None:
    """The body's last read took it over the high-water mark (reading paused) and completed
    it; the app answers without reading it: reading resumes for the next request."""
    server = host_app(asgi_apps.body_app)
    with connect(server.port) as sock:
        sock.sendall(post_head("/ignore-later", 100_000) + b"a" * 60_000)
        time.sleep(0.1)
        sock.sendall(b"b" * 40_000)  # one read: over 64 KiB waiting, and the body's end
        reader = Reader(sock)
        assert reader.response().body == b"ignored"
        sock.sendall(get("/parts"))  # sent only now: the server must be reading again
        assert json.loads(reader.response().body)["parts"] == [[0, False]]


def test_a_pipelined_request_whose_body_is_refused_never_reaches_the_app(host_app: HostApp) -> None:
    """Its head was checked while the request before it was being answered; its body's framing
    breaks before its turn: the earlier answer goes out, then the 400, and its app is never
    called."""
    server = host_app(asgi_apps.body_app)
    with connect(server.port) as sock:
        sock.sendall(post_head("/ignore-later", 0) + post_head("/parts", None) + b"zz\r\n")
        reader = Reader(sock)
        assert reader.response().body == b"ignored"
        assert reader.response().status == 400
        assert close_kind(sock) == "fin"
    time.sleep(0.1)
    assert EVENTS == []
    assert server.stats()["errors"] == {"bad_request": 1}


def test_100_continue_waits_for_the_app_to_read(host_app: HostApp) -> None:
    """A client that waits for 100 Continue gets it when the app first reads its body; one
    that the app answers without reading gets the answer and a close (it may still send the
    body, or not: nothing after it could be framed)."""
    server = host_app(asgi_apps.body_app)
    expect = b"Expect: 100-continue\r\n"
    with connect(server.port) as sock:
        sock.sendall(post_head("/held", 5).replace(b"Host: t\r\n", b"Host: t\r\n" + expect))
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(65536)  # the app has not read yet: no 100
        RELEASE_BODY.set()
        sock.settimeout(5)
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        assert json.loads(Reader(sock).response().body)["body"] == "hello"
    with connect(server.port) as sock:
        sock.sendall(post_head("/ignore", 5).replace(b"Host: t\r\n", b"Host: t\r\n" + expect))
        answer = Reader(sock).response()
        assert (answer.body, answer.headers["connection"]) == (b"ignored", "close")


def test_no_body_timeout_while_the_server_holds_the_client_back(host_app: HostApp) -> None:
    server = host_app(asgi_apps.body_app, body_timeout_seconds=0.3)
    with connect(server.port) as sock:
        sock.sendall(post_head("/held", 200_000) + b"w" * 200_000)
        time.sleep(0.8)  # well past the body timeout; the server is the one not reading
        RELEASE_BODY.set()
        answer = Reader(sock).response()
    assert answer.status == 200
    assert sum(length for length, _ in json.loads(answer.body)["parts"]) == 200_000


# --- failures ----------------------------------------------------------------------------------

def test_an_app_exception_is_a_500_and_its_neighbours_go_on(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    with connect(server.port) as neighbour:
        neighbour_reader = Reader(neighbour)
        neighbour.sendall(get("/before"))
        assert neighbour_reader.response().body == b"/before"
        for path in ("/fail", "/nothing", "/bad-header", "/wrong-length"):
            answer = exchange(server.port, get(path))
            assert answer.status == 500, path
            assert b"Set-Cookie" not in answer.body
        neighbour.sendall(get("/after"))
        assert neighbour_reader.response().body == b"/after"
    assert server.stats()["errors"]["handler_error"] == 4


def test_an_exception_after_the_head_cuts_the_connection(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    with connect(server.port) as sock:
        sock.sendall(get("/fail-midway"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and b"partial" in data
    assert not data.endswith(b"0\r\n\r\n")  # the chunked body never ends: the client sees it cut


def test_send_waits_while_the_client_does_not_read(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    with connect(server.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(get("/big-stream"))
        time.sleep(0.5)
        # 64 MiB cannot fit in the socket buffers: an app not held back would be done by now.
        assert "big-stream sent" not in EVENTS
        received = 0
        while received < 64 * 1024 * 1024:
            received += len(sock.recv(1024 * 1024))
        assert wait_for(lambda: "big-stream sent" in EVENTS)


def test_the_app_hears_of_a_client_that_went_away(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app)
    with connect(server.port) as sock:
        sock.sendall(get("/wait-disconnect"))
        assert b"waiting" in sock.recv(65536) or b"waiting" in sock.recv(65536)
    assert wait_for(lambda: EVENTS == ["http.disconnect"])


@pytest.mark.parametrize("request_bytes, status", [
    (NO_HOST, 400),
    (GZIP_CODED, 501),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000, 413),
])
def test_the_app_never_sees_a_request_the_server_refused(host_app: HostApp,
                                                         request_bytes: bytes, status: int) -> None:
    server = host_app(asgi_apps.scope_app, max_body_bytes=1000)
    assert exchange(server.port, request_bytes).status == status
    stats = server.stats()
    assert stats["requests"] == 0  # the app answered nothing: the refusal is not a request served
    assert sum(stats["errors"].values()) == 1


# --- knobs on a hosted app ---------------------------------------------------------------------

def test_socket_knobs_apply_to_the_apps_connections_and_read_back(host_app: HostApp) -> None:
    server = host_app(asgi_apps.scope_app)
    with connect(server.port) as sock:
        reader = Reader(sock)
        sock.sendall(get("/"))
        assert json.loads(reader.response().body)["socket_options"]["nodelay"] is True
        server.reconfigure(nodelay=False)
        sock.sendall(get("/"))
        assert json.loads(reader.response().body)["socket_options"]["nodelay"] is False


@pytest.mark.timing
def test_nagle_stalls_a_hosted_app_on_an_open_connection(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app, split_writes=True)
    with connect(server.port) as sock:
        reader = Reader(sock)

        def timed() -> list[float]:
            latencies = []
            for _ in range(NAGLE_REQUESTS):
                started = time.perf_counter()
                sock.sendall(get("/x"))
                reader.response()
                latencies.append((time.perf_counter() - started) * 1000)
            return latencies

        before = timed()
        server.reconfigure(nodelay=False)
        after = timed()
    assert statistics.median(before) < 5, before
    assert statistics.median(after) >= 30, after


def test_the_stall_injector_stalls_a_hosted_app(host_app: HostApp) -> None:
    server = host_app(asgi_apps.edge_app, stall_every_seconds=0.1, stall_ms=50)
    with connect(server.port) as sock:
        reader = Reader(sock)
        latencies = []
        ends = time.monotonic() + 0.5
        while time.monotonic() < ends:
            started = time.perf_counter()
            sock.sendall(get("/x"))
            reader.response()
            latencies.append((time.perf_counter() - started) * 1000)
    assert server.stats()["stalls"] >= 2
    assert max(latencies) >= 30  # a request that met a stall waited for it


# --- lifespan ----------------------------------------------------------------------------------

@pytest.mark.parametrize("app", ["asgi_apps:failing_lifespan_app", "asgi_apps:failing_starlette_app"])
def test_a_failing_startup_is_one_line_naming_the_app(app: str) -> None:
    with pytest.raises(ServerError) as raised:
        start_server(app=app)
    message = str(raised.value)
    assert "\n" not in message
    assert app in message and "database unreachable" in message


def test_serve_reports_a_failing_startup_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "serve", "--app", "asgi_apps:failing_starlette_app",
                           "--port", "0"], capture_output=True, text=True, timeout=60, cwd=TESTS,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"})
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "asgi_apps:failing_starlette_app" in done.stderr and "database unreachable" in done.stderr


def test_lifespan_runs_startup_before_serving_and_shutdown_at_stop() -> None:
    server = start_server(app=asgi_apps.starlette_app)
    try:
        assert EVENTS == ["startup"]
        assert httpx.get(server.url + "/ok").text == "OK"
    finally:
        server.stop()
    assert EVENTS == ["startup", "shutdown"]


def test_lifespan_on_refuses_an_app_without_one_in_one_line() -> None:
    with pytest.raises(ServerError) as raised:
        start_server(app=asgi_apps.edge_app, lifespan="on")
    assert "edge_app" in str(raised.value) and "\n" not in str(raised.value)
    # auto: the same app is served, its lifespan taken as unsupported
    with start_server(app=asgi_apps.edge_app) as served:
        assert httpx.get(served.url + "/x").text == "/x"


def test_lifespan_state_reaches_requests_and_off_skips_it(host_app: HostApp) -> None:
    server = host_app(asgi_apps.starlette_app)
    assert httpx.get(server.url + "/").json()["greeting"] == "hello from lifespan"
    # With the lifespan off the same app starts even though its startup would fail.
    skipped = host_app(asgi_apps.failing_lifespan_app, lifespan="off")
    assert httpx.get(skipped.url + "/").text == "never"


# --- WebSocket ---------------------------------------------------------------------------------

def test_websocket_accept_with_subprotocol_send_and_close_codes(host_app: HostApp) -> None:
    server = host_app(asgi_apps.ws_app)
    url = f"ws://127.0.0.1:{server.port}/echo"
    with ws_connect(url, subprotocols=["chat", "other"]) as client:  # type: ignore[list-item]
        assert client.subprotocol == "chat"
        assert client.response.headers["x-accepted"] == "yes"
        client.send("hello")
        assert client.recv(timeout=5) == "hello"
        client.send(b"\x00\x01")
        assert client.recv(timeout=5) == b"\x00\x01"
        client.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    assert wait_for(lambda: EVENTS == ["ws disconnect 4001"]), EVENTS


def test_websocket_close_before_accept_is_a_403(host_app: HostApp) -> None:
    server = host_app(asgi_apps.ws_app)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"ws://127.0.0.1:{server.port}/deny")
    assert refused.value.response.status_code == 403


def test_an_exception_before_accept_is_a_500(host_app: HostApp) -> None:
    server = host_app(asgi_apps.ws_app)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"ws://127.0.0.1:{server.port}/boom")
    assert refused.value.response.status_code == 500
    assert server.stats()["errors"]["handler_error"] == 1


def test_a_send_after_the_client_went_is_refused(host_app: HostApp) -> None:
    server = host_app(asgi_apps.ws_app)
    with ws_connect(f"ws://127.0.0.1:{server.port}/late-send") as client:
        client.close()
    assert wait_for(lambda: EVENTS == ["websocket.disconnect", "ClientDisconnected"])


def test_websocket_send_waits_while_the_client_does_not_read(host_app: HostApp) -> None:
    server = host_app(asgi_apps.ws_app)
    with ws_connect(f"ws://127.0.0.1:{server.port}/flood", max_size=None, max_queue=1) as client:
        time.sleep(0.5)
        assert "flood sent" not in EVENTS  # held back: 64 MiB cannot all be in the buffers
        received = 0
        while received < 1024:
            client.recv(timeout=10)
            received += 1
    assert wait_for(lambda: "flood sent" in EVENTS)


def test_the_app_hears_the_clients_close_code(host_app: HostApp) -> None:
    server = host_app(asgi_apps.ws_app)
    with ws_connect(f"ws://127.0.0.1:{server.port}/echo") as client:
        client.send("one")
        assert client.recv(timeout=5) == "one"
        client.close(code=4100)
    assert wait_for(lambda: EVENTS == ["ws disconnect 4100"])


# --- real apps ---------------------------------------------------------------------------------

def test_a_starlette_app(host_app: HostApp) -> None:
    server = host_app(asgi_apps.starlette_app)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").json() == {"framework": "starlette", "greeting": "hello from lifespan"}
        body = b"y" * 100_000
        assert client.post("/echo", content=body).json() == {"length": 100_000, "start": "y" * 10}
        streamed = client.get("/numbers")
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert streamed.text == "0\n1\n2\n3\n4\n"
        assert client.get("/file").content == asgi_apps.STATIC_FILE.read_bytes()
        assert client.get("/later").text == "answered"
        assert wait_for(lambda: BACKGROUND == ["starlette task ran"])
        assert client.get("/nope").status_code == 404
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws") as websocket:
        websocket.send("hi")
        assert websocket.recv(timeout=5) == "starlette: hi"


def test_a_fastapi_app(host_app: HostApp) -> None:
    server = host_app(asgi_apps.fastapi_app)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/items/5", params={"q": "x"}).json() == {"item_id": 5, "q": "x"}
        assert client.get("/items/five").status_code == 422
        assert client.post("/items", json={"a": [1, 2]}).json() == {"received": {"a": [1, 2]}}
        assert client.get("/sync").json() == {"ran": "in a thread"}
        assert client.get("/stream").text == "abc"
        assert client.get("/file").content == asgi_apps.STATIC_FILE.read_bytes()
        assert client.get("/later").json() == {"queued": True}
        assert wait_for(lambda: BACKGROUND == ["fastapi task ran"])
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws") as websocket:
        websocket.send(json.dumps({"n": 1}))
        assert json.loads(websocket.recv(timeout=5)) == {"fastapi": {"n": 1}}


def test_the_generator_loads_a_hosted_starlette_app(make_server: Callable[..., ServerHandle]) -> None:
    server = make_server(app="asgi_apps:starlette_app", isolation="process")
    result = run_load(LoadSpec(url=server.url + "/ok", connections=4, duration_seconds=0.5))
    assert result.errors == {}
    assert result.responses > 0
    assert result.responses == server.stats()["requests"]


def test_serve_app_runs_a_starlette_app_until_ctrl_c() -> None:
    serving = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--app", "asgi_apps:starlette_app",
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=TESTS, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"})
    try:
        assert serving.stdout is not None
        line = serving.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        assert httpx.get(url + "/").json()["framework"] == "starlette"
        serving.send_signal(signal.SIGINT)
        assert serving.wait(timeout=15) == 0
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()


def test_an_app_and_a_router_together_are_refused_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "serve", "--app", "asgi_apps:edge_app", "--router",
                           "x:y"], capture_output=True, text=True, timeout=60, cwd=TESTS)
    assert done.returncode == 2
    assert "--app" in done.stderr and done.stderr.strip().count("\n") == 0


def test_an_app_that_does_not_import_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "serve", "--app", "no_such_module:app"],
                          capture_output=True, text=True, timeout=60, cwd=TESTS)
    assert done.returncode == 2
    assert "no_such_module" in done.stderr and done.stderr.strip().count("\n") == 0

"""A server that stops or restarts ends its connections as uvicorn and nginx do: an answer
being made still goes out, an idle keep-alive connection is closed in order, WebSocket
clients get a close frame that says why (1001 stopping, 1012 restarting), and a client that
neither reads nor answers cannot hold the stop beyond the grace period."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time

import asgi_apps
import pytest
from fakes import wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from lab.http.core import SHUTDOWN_GRACE_SECONDS


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a reset raises."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def stop_soon(handle, after_seconds: float) -> threading.Thread:
    """Stop the server from another thread a moment from now (stop() blocks until it is done)."""
    stopper = threading.Thread(target=lambda: (time.sleep(after_seconds), handle.stop()))
    stopper.start()
    return stopper


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_an_answer_being_made_when_the_server_stops_still_arrives_and_says_close(make_server, isolation):
    handle = make_server(isolation=isolation)
    with connect(handle.port) as sock:
        sock.sendall(b"GET /delay/400 HTTP/1.1\r\nHost: t\r\n\r\n")
        stopper = stop_soon(handle, 0.1)
        answer = read_until_closed(sock)  # nothing, cut unanswered, was the old behaviour
        stopper.join()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"connection: close" in answer.lower(), answer


def test_requests_pipelined_behind_it_are_not_answered(make_server):
    handle = make_server()
    with connect(handle.port) as sock:
        sock.sendall(b"GET /delay/300 HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        stopper = stop_soon(handle, 0.1)
        answer = read_until_closed(sock)
        stopper.join()
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # the client may send the second again elsewhere


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_an_idle_keepalive_connection_is_closed_in_order(make_server, isolation):
    handle = make_server(isolation=isolation)
    with connect(handle.port) as sock:
        sock.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200") and b"keep-alive" in first.lower(), first
        handle.stop()
        assert sock.recv(65536) == b"", "an orderly close: end of stream, not ECONNRESET"


@pytest.mark.parametrize(("restart", "code"), [(False, 1001), (True, 1012)], ids=["stop", "restart"])
def test_a_websocket_client_is_told_why_the_server_closes(make_server, restart, code):
    handle = make_server(isolation="process")
    with ws_connect(f"ws://127.0.0.1:{handle.port}/ws/echo", open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        started = time.monotonic()
        if restart:
            handle.reconfigure(backlog=64)  # a listener knob: the server restarts on the same port
        else:
            handle.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code, closed.value
    # The client answered the close at once: nobody waited for the grace period to run out.
    assert time.monotonic() - started < SHUTDOWN_GRACE_SECONDS, "the close handshake completed"
    if restart:
        with ws_connect(f"ws://127.0.0.1:{handle.port}/ws/echo", open_timeout=10) as again:
            again.send("back")
            assert again.recv(timeout=10) == "back"


async def slow_app(scope, receive, send) -> None:
    """An ASGI app whose every answer takes 300 ms (and that speaks no lifespan)."""
    if scope["type"] != "http":
        raise RuntimeError("HTTP only")
    await asyncio.sleep(0.3)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"done"})


def test_a_hosted_apps_answer_being_made_when_the_server_stops_still_arrives(make_server):
    handle = make_server(app=slow_app)
    with connect(handle.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        stopper = stop_soon(handle, 0.1)
        answer = read_until_closed(sock)
        stopper.join()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done"), answer
    assert b"connection: close" in answer.lower(), answer


def test_a_hosted_apps_websocket_hears_the_code_the_client_answered_with(make_server):
    asgi_apps.EVENTS.clear()
    handle = make_server(app=asgi_apps.ws_app)
    with ws_connect(f"ws://127.0.0.1:{handle.port}/echo", open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        handle.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
    assert "ws disconnect 1001" in asgi_apps.EVENTS, asgi_apps.EVENTS


@pytest.mark.timing
def test_clients_that_neither_read_nor_answer_cannot_hold_the_stop_beyond_the_grace(make_server):
    handle = make_server(isolation="process", send_buffer_bytes=4096)
    stuck = connect(handle.port)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /bytes/20000000 HTTP/1.1\r\nHost: t\r\n\r\n")  # and never read it
    waiting = connect(handle.port)
    waiting.sendall(b"GET /delay/60000 HTTP/1.1\r\nHost: t\r\n\r\n")  # an answer a minute away
    assert wait_for(lambda: handle.stats()["connections_open"] == 2), "both connections open"
    started = time.monotonic()
    handle.stop()
    took = time.monotonic() - started
    with stuck, waiting:
        assert SHUTDOWN_GRACE_SECONDS * 0.9 <= took <= SHUTDOWN_GRACE_SECONDS + 3, took
        assert read_until_closed(waiting) == b"", "cut unanswered when the grace ran out"


def serve_cli(*flags: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--port", "0", *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("listening on http://127.0.0.1:"), line + process.stderr.read()  # type: ignore[union-attr]
    return process, int(line.rsplit(":", 1)[1])


@pytest.mark.timing
def test_serve_says_it_waits_and_a_second_ctrl_c_cuts_the_wait_without_a_traceback() -> None:
    # The first Ctrl-C leaves open connections their grace period and says so; the second one
    # (a user who will not wait) cuts them at once. Before, the second one stopped the loop in
    # the middle of the close: a RuntimeError traceback.
    process, port = serve_cli()
    try:
        with connect(port) as held:
            held.sendall(b"GET /delay/60000 HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.3)  # the request is being answered
            process.send_signal(signal.SIGINT)
            said = process.stdout.readline()  # type: ignore[union-attr]
            assert said.startswith("stopping: 1 open connection(s) get up to"), said
            assert "Ctrl-C again cuts them" in said
            second = time.monotonic()
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 0
            assert time.monotonic() - second < 0.75 * SHUTDOWN_GRACE_SECONDS  # not the whole grace
            assert held.recv(65536) == b""  # cut, never answered
        out, err = process.communicate(timeout=5)
        assert "Traceback" not in err, err
        assert out.strip().splitlines()[-1] == f"stopped (SIGINT): no longer listening on http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()

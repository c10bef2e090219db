"""uvicorn's ASGI conformance cases, run against the lab's server hosting the same apps.

Ported from encode/uvicorn (commit e6c7ce79): tests/protocols/test_http.py,
tests/protocols/test_websocket.py and tests/test_lifespan.py. The code is ours; each test
names the upstream file and test it follows. uvicorn's HTTP cases feed bytes to a protocol
object over a mock transport; here every case drives the real server over a real socket on
127.0.0.1, with the same request bytes (named as upstream names them). Where the lab answers
differently by design, the test asserts the lab's answer and its docstring says why.

Not ported, because they test something of uvicorn's own rather than the ASGI behaviour:

- test_http.py: ``test_request_logging`` (uvicorn's access log), ``test_root_path`` (the
  ``--root-path`` option; the lab serves ``root_path`` "" as uvicorn does without it),
  ``test_max_concurrency`` (``--limit-concurrency``; the lab's ``max_connections`` is ported
  in its place), ``test_shutdown_during_request`` (``protocol.shutdown()``, an internal call),
  ``test_supported_upgrade_request``, ``test_unsupported_ws_upgrade_request``,
  ``test_unsupported_ws_upgrade_request_warn_on_auto``,
  ``test_header_upgrade_is_websocket_depend_not_installed`` and
  ``test_header_upgrade_is_not_websocket_depend_installed`` (the ``--ws`` choice of library,
  and its warnings), the h11 variants of the huge-header cases (``test_huge_headers_h11*``:
  the lab has no h11 back-end), ``test_scopes``'s ASGI 2 app (the lab hosts ASGI 3 apps
  only).
- test_websocket.py: the ``websocket.http.response`` extension cases
  (``test_server_reject_connection_with_response``, ``..._with_multibody_response``,
  ``..._with_invalid_status``, ``..._with_body_nolength``, ``..._with_invalid_msg``,
  ``..._with_missing_body``, ``test_server_multiple_websocket_http_response_start_events``:
  the lab does not offer the extension, so its scope does not announce it),
  ``test_default_server_headers``, ``test_no_server_headers`` and
  ``test_no_date_header_on_wsproto`` (uvicorn's ``Server``/``Date`` header options);
  ``test_send_close_on_server_shutdown`` differs and is not ported: uvicorn closes each open
  WebSocket with 1012 when it stops, the lab's stop aborts every connection (lab/http/core.py),
  so the client sees 1006 (test_shutdown checks that the WebSocket ends).
- test_lifespan.py: ``test_lifespan_scope_asgi2app`` (ASGI 2).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
from fakes import wait_for
from rawhttp import Answer, Reader, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect as ws_connect

from lab.errors import ServerError
from lab.server import ServerHandle, start_server

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
HostApp = Callable[..., ServerHandle]

# --- request bytes, as upstream names them -------------------------------------------------------

SIMPLE_GET_REQUEST = b"\r\n".join([b"GET / HTTP/1.1", b"Host: example.org", b"", b""])
SIMPLE_HEAD_REQUEST = b"\r\n".join([b"HEAD / HTTP/1.1", b"Host: example.org", b"", b""])
SIMPLE_POST_REQUEST = b"\r\n".join([b"POST / HTTP/1.1", b"Host: example.org",
                                    b"Content-Type: application/json", b"Content-Length: 18", b"",
                                    b'{"hello": "world"}'])
CONNECTION_CLOSE_REQUEST = b"\r\n".join([b"GET / HTTP/1.1", b"Host: example.org", b"Connection: close",
                                         b"", b""])
CONNECTION_CLOSE_POST_REQUEST = b"\r\n".join([b"POST / HTTP/1.1", b"Host: example.org", b"Connection: close",
                                              b"Content-Type: application/json", b"Content-Length: 18", b"",
                                              b"{'hello': 'world'}"])
REQUEST_AFTER_CONNECTION_CLOSE = b"\r\n".join([b"GET / HTTP/1.1", b"Host: example.org", b"Connection: close",
                                               b"", b"", b"GET / HTTP/1.1", b"Host: example.org", b"", b""])
LARGE_POST_REQUEST = b"\r\n".join([b"POST / HTTP/1.1", b"Host: example.org", b"Content-Type: text/plain",
                                   b"Content-Length: 100000", b"", b"x" * 100000])
START_POST_REQUEST = b"\r\n".join([b"POST / HTTP/1.1", b"Host: example.org",
                                   b"Content-Type: application/json", b"Content-Length: 18", b"", b""])
FINISH_POST_REQUEST = b'{"hello": "world"}'
HTTP10_GET_REQUEST = b"\r\n".join([b"GET / HTTP/1.0", b"Host: example.org", b"", b""])
GET_REQUEST_WITH_RAW_PATH = b"\r\n".join([b"GET /one%2Ftwo HTTP/1.1", b"Host: example.org", b"", b""])
UPGRADE_HTTP2_REQUEST = b"\r\n".join([b"GET / HTTP/1.1", b"Host: example.org", b"Connection: upgrade",
                                      b"Upgrade: h2c", b"Sec-WebSocket-Version: 11", b"", b""])
INVALID_REQUEST_TEMPLATE = b"\r\n".join([b"%s", b"Host: example.org", b"", b""])
GET_REQUEST_HUGE_HEADERS = [
    b"".join([b"GET / HTTP/1.1\r\n", b"Host: example.org\r\n", b"Cookie: " + b"x" * 32 * 1024]),
    b"".join([b"x" * 32 * 1024 + b"\r\n", b"\r\n", b"\r\n"]),
]
EXPECT_100_REQUEST = b"\r\n".join([b"POST / HTTP/1.1", b"Host: example.org", b"Expect: 100-continue",
                                   b"Content-Type: application/json", b"Content-Length: 18", b"",
                                   b'{"hello": "world"}'])
WEBSOCKET_UPGRADE_HEADERS = {"upgrade": "websocket", "connection": "upgrade", "sec-websocket-version": "13",
                             "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}


# --- apps, as upstream's tests/response.py and its inline apps ------------------------------------

def response(content: bytes | str = b"", *, status: int = 200, headers: dict[str, str] | None = None,
             media_type: str | None = None) -> App:
    """An app that answers every request with this response (upstream's ``Response``)."""
    body = content.encode() if isinstance(content, str) else content
    raw = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    names = {name for name, _ in raw}
    if b"content-length" not in names and b"transfer-encoding" not in names:
        raw.append((b"content-length", str(len(body)).encode()))
    if media_type is not None:
        if media_type.startswith("text/"):
            media_type += "; charset=utf-8"
        raw.append((b"content-type", media_type.encode()))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
    return app


async def read_body(receive: Receive) -> bytes:
    body, more_body = b"", True
    while more_body:
        message = await receive()
        assert message["type"] == "http.request"
        body += message.get("body", b"")
        more_body = message.get("more_body", False)
    return body


async def body_echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    await response(b"Body: " + body, media_type="text/plain")(scope, receive, send)


@pytest.fixture
def host(make_server: Callable[..., ServerHandle]) -> HostApp:
    """The lab's server in a thread of the test, hosting the given app (lifespan off, as upstream)."""
    return lambda app, **knobs: make_server(app=app, **{"lifespan": "off", **knobs})


def exchange_raw(port: int, data: bytes, count: int = 1) -> tuple[list[Answer], str]:
    """Send ``data``, read ``count`` answers, then how the connection ended or stays."""
    with connect(port) as sock:
        sock.sendall(data)
        reader = Reader(sock)
        answers = [reader.response() for _ in range(count)]
        return answers, state_after(sock)


def state_after(sock: socket.socket, seconds: float = 0.3) -> str:
    """"open" if nothing arrives for a while, else how the server ended the connection."""
    sock.settimeout(seconds)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return "open"
    except ConnectionResetError:
        return "reset"
    return "fin" if not data else f"data {data[:40]!r}"


def raw_answer(port: int, data: bytes) -> bytes:
    """Everything the server sends for ``data`` until it closes the connection."""
    with connect(port) as sock:
        sock.sendall(data)
        received = b""
        sock.settimeout(5)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


# --- tests/protocols/test_http.py ----------------------------------------------------------------

def test_get_request(host: HostApp) -> None:
    """test_http.py::test_get_request"""
    server = host(response("Hello, world", media_type="text/plain"))
    [answer], _ = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert (answer.status, answer.body) == (200, b"Hello, world")


@pytest.mark.parametrize("char", ["c", "\t", " ", "µ"],
                         ids=["allow_ascii_letter", "allow_tab", "allow_space", "allow_non_ascii_char"])
def test_header_value_allowed_characters(host: HostApp, char: str) -> None:
    """test_http.py::test_header_value_allowed_characters"""
    server = host(response("Hello, world", media_type="text/plain", headers={"key": f"<{char}>"}))
    data = raw_answer(server.port, CONNECTION_CLOSE_REQUEST)
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b"\r\nkey: <" + char.encode() + b">\r\n" in data
    assert data.endswith(b"Hello, world")


def test_head_request(host: HostApp) -> None:
    """test_http.py::test_head_request"""
    server = host(response("Hello, world", media_type="text/plain"))
    with connect(server.port) as sock:
        sock.sendall(SIMPLE_HEAD_REQUEST)
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
        assert b"Hello, world" not in head and state_after(sock) == "open"


def test_post_request(host: HostApp) -> None:
    """test_http.py::test_post_request"""
    server = host(body_echo_app)
    [answer], _ = exchange_raw(server.port, SIMPLE_POST_REQUEST)
    assert (answer.status, answer.body) == (200, b'Body: {"hello": "world"}')


def test_keepalive(host: HostApp) -> None:
    """test_http.py::test_keepalive"""
    server = host(response(b"", status=204))
    [answer], after = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert answer.status == 204 and after == "open"


def test_keepalive_timeout(host: HostApp) -> None:
    """test_http.py::test_keepalive_timeout, with the lab's keepalive_timeout_seconds for
    uvicorn's --timeout-keep-alive (5 s there, 0.5 s here)."""
    server = host(response(b"", status=204), keepalive_timeout_seconds=0.5)
    with connect(server.port) as sock:
        sock.sendall(SIMPLE_GET_REQUEST)
        assert Reader(sock).response().status == 204
        assert state_after(sock, 0.2) == "open"
        assert state_after(sock, 2.0) == "fin"


def test_keepalive_timeout_with_pipelined_requests(host: HostApp) -> None:
    """test_http.py::test_keepalive_timeout_with_pipelined_requests: no keep-alive timeout
    runs while a pipelined request waits for its answer (upstream reads the timer itself;
    here each answer takes longer than the timeout, and the second still comes)."""
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.4)
        await response("Hello, world", media_type="text/plain")(scope, receive, send)
    server = host(slow, keepalive_timeout_seconds=0.25)
    with connect(server.port) as sock:
        sock.sendall(SIMPLE_GET_REQUEST * 2)
        reader = Reader(sock)
        # 0.4 s between the answers: a timer started by the first would have closed by then.
        assert [reader.response().body for _ in range(2)] == [b"Hello, world"] * 2
        assert state_after(sock, 2.0) == "fin"  # idle again: the timer runs, and closes it


def test_close(host: HostApp) -> None:
    """test_http.py::test_close"""
    server = host(response(b"", status=204, headers={"connection": "close"}))
    [answer], after = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert answer.status == 204 and after == "fin"


def test_chunked_encoding(host: HostApp) -> None:
    """test_http.py::test_chunked_encoding. An app's own Transfer-Encoding is the framing's
    business, which the server owns: a body given in one message goes out with a
    Content-Length (upstream checks for the chunked ending instead). Same body, same
    keep-alive."""
    server = host(response(b"Hello, world!", headers={"transfer-encoding": "chunked"}))
    [answer], after = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert (answer.status, answer.body, after) == (200, b"Hello, world!", "open")


def test_chunked_encoding_empty_body(host: HostApp) -> None:
    """test_http.py::test_chunked_encoding_empty_body: one answer, one body end."""
    server = host(response(b"Hello, world!", headers={"transfer-encoding": "chunked"}))
    with connect(server.port) as sock:
        sock.sendall(SIMPLE_GET_REQUEST)
        assert Reader(sock).response().body == b"Hello, world!"
        assert state_after(sock) == "open"  # nothing more was sent: no second ending


def test_chunked_encoding_head_request(host: HostApp) -> None:
    """test_http.py::test_chunked_encoding_head_request"""
    server = host(response(b"Hello, world!", headers={"transfer-encoding": "chunked"}))
    with connect(server.port) as sock:
        sock.sendall(SIMPLE_HEAD_REQUEST)
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
        assert state_after(sock) == "open"


def test_pipelined_requests(host: HostApp) -> None:
    """test_http.py::test_pipelined_requests"""
    server = host(response("Hello, world", media_type="text/plain"))
    answers, after = exchange_raw(server.port, SIMPLE_GET_REQUEST * 3, count=3)
    assert [(a.status, a.body) for a in answers] == [(200, b"Hello, world")] * 3
    assert after == "open"


def test_undersized_request(host: HostApp) -> None:
    """test_http.py::test_undersized_request. The body is shorter than its Content-Length:
    the connection closes. The lab sees it before anything is written (the whole body came
    in one message) and answers 500 first; upstream had written the head already."""
    server = host(response(b"xxx", headers={"content-length": "10"}))
    [answer], after = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert answer.status == 500 and after == "fin"


def test_oversized_request(host: HostApp) -> None:
    """test_http.py::test_oversized_request (as the undersized one)."""
    server = host(response(b"xxx" * 20, headers={"content-length": "10"}))
    [answer], after = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert answer.status == 500 and after == "fin"


def test_large_post_request(host: HostApp) -> None:
    """test_http.py::test_large_post_request: a 100 KB body to an app that does not read it
    (upstream checks that reading pauses and resumes; tests/test_asgi.py checks the lab's
    back-pressure over a socket); the answer comes and the connection goes on."""
    server = host(response("Hello, world", media_type="text/plain"))
    answers, after = exchange_raw(server.port, LARGE_POST_REQUEST + SIMPLE_GET_REQUEST, count=2)
    assert [a.body for a in answers] == [b"Hello, world"] * 2 and after == "open"


def test_invalid_http(host: HostApp) -> None:
    """test_http.py::test_invalid_http"""
    server = host(response("Hello, world", media_type="text/plain"))
    data = raw_answer(server.port, b"x" * 100000)
    assert data.startswith(b"HTTP/1.1 4") and b"Hello, world" not in data


def test_app_exception(host: HostApp) -> None:
    """test_http.py::test_app_exception"""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise Exception()
    server = host(app)
    [answer], after = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert answer.status == 500 and after == "fin"


def test_exception_during_response(host: HostApp) -> None:
    """test_http.py::test_exception_during_response"""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"1", "more_body": True})
        raise Exception()
    server = host(app)
    data = raw_answer(server.port, SIMPLE_GET_REQUEST)
    assert data.startswith(b"HTTP/1.1 200 OK") and b"500 Internal Server Error" not in data


def test_no_response_returned(host: HostApp) -> None:
    """test_http.py::test_no_response_returned"""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass
    server = host(app)
    [answer], after = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert answer.status == 500 and after == "fin"


def test_partial_response_returned(host: HostApp) -> None:
    """test_http.py::test_partial_response_returned. The app sent only its start. uvicorn had
    written the head at the start, so it can only close; the lab writes the head with the
    first body, so the client gets a 500 instead of a head without an answer. Closed either way."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
    server = host(app)
    data = raw_answer(server.port, SIMPLE_GET_REQUEST)
    assert data.count(b"HTTP/1.1 ") == 1 and b"200 OK" not in data


def test_response_header_splitting(host: HostApp) -> None:
    """test_http.py::test_response_header_splitting: the smuggled header never reaches the
    wire and the connection closes (the lab answers 500, as for the partial response)."""
    server = host(response(b"", headers={"key": "value\r\nCookie: smuggled=value"}))
    data = raw_answer(server.port, SIMPLE_GET_REQUEST)
    assert b"\r\nCookie: smuggled=value\r\n" not in data and b"200 OK" not in data


def test_duplicate_start_message(host: HostApp) -> None:
    """test_http.py::test_duplicate_start_message (a 500 here, as for the partial response)."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.start", "status": 200})
    server = host(app)
    data = raw_answer(server.port, SIMPLE_GET_REQUEST)
    assert data.count(b"HTTP/1.1 ") == 1 and b"200 OK" not in data


def test_missing_start_message(host: HostApp) -> None:
    """test_http.py::test_missing_start_message"""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.body", "body": b""})
    server = host(app)
    [answer], after = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert answer.status == 500 and after == "fin"


def test_message_after_body_complete(host: HostApp) -> None:
    """test_http.py::test_message_after_body_complete: the answer is sent, then the app's
    error closes the connection; no second answer follows the first."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b""})
        await send({"type": "http.response.body", "body": b""})
    server = host(app)
    data = raw_answer(server.port, SIMPLE_GET_REQUEST)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.count(b"HTTP/1.1 ") == 1


def test_value_returned(host: HostApp) -> None:
    """test_http.py::test_value_returned. uvicorn closes the connection when an app returns
    something other than None; the lab ignores the value (the answer was complete) and keeps
    the connection, so only the answer is checked."""
    async def app(scope: Scope, receive: Receive, send: Send) -> Any:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b""})
        return 123
    server = host(app)
    [answer], _ = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert answer.status == 200


def test_early_disconnect(host: HostApp) -> None:
    """test_http.py::test_early_disconnect"""
    got_disconnect = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        got_disconnect.set()
    server = host(app)
    with connect(server.port) as sock:
        sock.sendall(SIMPLE_POST_REQUEST)
    assert got_disconnect.wait(5)


def test_early_response(host: HostApp) -> None:
    """test_http.py::test_early_response: the app answers before the body has come; the body
    comes after, and the connection goes on."""
    server = host(response("Hello, world", media_type="text/plain"))
    with connect(server.port) as sock:
        sock.sendall(START_POST_REQUEST)
        reader = Reader(sock)
        assert reader.response().status == 200
        sock.sendall(FINISH_POST_REQUEST + SIMPLE_GET_REQUEST)
        assert reader.response().body == b"Hello, world"


def test_read_after_response(host: HostApp) -> None:
    """test_http.py::test_read_after_response"""
    after: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await response("Hello, world", media_type="text/plain")(scope, receive, send)
        after.append(await receive())
    server = host(app)
    [answer], _ = exchange_raw(server.port, SIMPLE_POST_REQUEST)
    assert answer.status == 200
    assert wait_for(lambda: after == [{"type": "http.disconnect"}]), after


def test_http10_request(host: HostApp) -> None:
    """test_http.py::test_http10_request"""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await response(f"Version: {scope['http_version']}", media_type="text/plain")(scope, receive, send)
    server = host(app)
    data = raw_answer(server.port, HTTP10_GET_REQUEST)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"Version: 1.0")


def test_raw_path(host: HostApp) -> None:
    """test_http.py::test_raw_path (without uvicorn's --root-path)"""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["path"] == "/one/two" and scope["raw_path"] == b"/one%2Ftwo"
        await response("Done", media_type="text/plain")(scope, receive, send)
    server = host(app)
    [answer], _ = exchange_raw(server.port, GET_REQUEST_WITH_RAW_PATH)
    assert answer.body == b"Done"


def test_max_connections_in_place_of_max_concurrency(host: HostApp) -> None:
    """test_http.py::test_max_concurrency, with the lab's max_connections in place of
    uvicorn's --limit-concurrency: past the limit, a 503 with a close."""
    server = host(response("Hello, world", media_type="text/plain"), max_connections=1)
    with connect(server.port) as first:
        first.sendall(SIMPLE_GET_REQUEST)
        assert Reader(first).response().status == 200
        data = raw_answer(server.port, SIMPLE_GET_REQUEST)
    assert data.startswith(b"HTTP/1.1 503 Service Unavailable") and b"Connection: close" in data


def test_shutdown_during_idle(host: HostApp) -> None:
    """test_http.py::test_shutdown_during_idle: stopping the server closes an idle connection
    and writes nothing on it."""
    server = host(response("Hello, world", media_type="text/plain"))
    with connect(server.port) as sock:
        time.sleep(0.1)
        server.stop()
        assert state_after(sock, 5) in ("fin", "reset")


def test_100_continue_sent_when_body_consumed(host: HostApp) -> None:
    """test_http.py::test_100_continue_sent_when_body_consumed"""
    server = host(body_echo_app)
    data = raw_answer(server.port, EXPECT_100_REQUEST.replace(b"Host:", b"Connection: close\r\nHost:"))
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert data.endswith(b'Body: {"hello": "world"}')


def test_100_continue_not_sent_when_body_not_consumed(host: HostApp) -> None:
    """test_http.py::test_100_continue_not_sent_when_body_not_consumed"""
    server = host(response(b"", status=204))
    with connect(server.port) as sock:
        sock.sendall(EXPECT_100_REQUEST)
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 204 No Content") and b"100 Continue" not in head


def test_http2_upgrade_request(host: HostApp) -> None:
    """test_http.py::test_http2_upgrade_request: an h2c upgrade is answered as HTTP/1.1."""
    server = host(response("Hello, world", media_type="text/plain"))
    data = raw_answer(server.port, UPGRADE_HTTP2_REQUEST)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"Hello, world")


def test_scopes(host: HostApp) -> None:
    """test_http.py::test_scopes (the ASGI 3 app; the spec version is uvicorn's current one)"""
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["asgi"])
        await response()(scope, receive, send)
    server = host(app)
    exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert seen == [{"version": "3.0", "spec_version": "2.4"}]


@pytest.mark.parametrize("request_line", [b"G?T / HTTP/1.1", b"GET /?x=y z HTTP/1.1", b"GET / HTTP1.1"],
                         ids=["invalid-method", "invalid-path", "invalid-http-version"])
def test_invalid_http_request(host: HostApp, request_line: bytes) -> None:
    """test_http.py::test_invalid_http_request (the lab's reason text is its own)"""
    server = host(response("Hello, world", media_type="text/plain"))
    data = raw_answer(server.port, INVALID_REQUEST_TEMPLATE % request_line)
    assert data.startswith(b"HTTP/1.1 400 Bad Request")


def test_fragmentation(host: HostApp) -> None:
    """test_http.py::test_fragmentation"""
    server = host(response("Hello, world", media_type="text/plain"))
    path = "/?param=" + "q" * 10
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    split = len(path) // 2
    with connect(server.port) as sock:
        sock.sendall(request[:split])
        time.sleep(0.01)
        sock.sendall(request[split:])
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK")


def test_huge_headers_httptools(host: HostApp) -> None:
    """test_http.py::test_huge_headers_httptools and test_huge_headers_httptools_will_pass.
    uvicorn's httptools protocol has no limit on a head; the lab's is max_header_bytes (16 KiB
    by default, where a 64 KiB cookie is a 431): raised past the head, the request passes."""
    server = host(response("Hello, world", media_type="text/plain"), max_header_bytes=128 * 1024)
    [answer], _ = exchange_raw(server.port, b"".join(GET_REQUEST_HUGE_HEADERS))
    assert (answer.status, answer.body) == (200, b"Hello, world")
    limited = host(response("Hello, world", media_type="text/plain"))
    assert raw_answer(limited.port, b"".join(GET_REQUEST_HUGE_HEADERS)).startswith(b"HTTP/1.1 431")


def test_return_close_header(host: HostApp) -> None:
    """test_http.py::test_return_close_header"""
    server = host(response("Hello, world", media_type="text/plain"))
    data = raw_answer(server.port, CONNECTION_CLOSE_REQUEST)
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b"content-type: text/plain" in data and b"content-length: 12" in data
    assert b"connection: close" in data.lower()


def test_close_connection_with_multiple_requests(host: HostApp) -> None:
    """test_http.py::test_close_connection_with_multiple_requests: nothing after the close."""
    server = host(response("Hello, world", media_type="text/plain"))
    data = raw_answer(server.port, REQUEST_AFTER_CONNECTION_CLOSE)
    assert data.count(b"HTTP/1.1 200 OK") == 1 and b"connection: close" in data.lower()


def test_close_connection_with_post_request(host: HostApp) -> None:
    """test_http.py::test_close_connection_with_post_request"""
    server = host(body_echo_app)
    data = raw_answer(server.port, CONNECTION_CLOSE_POST_REQUEST)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"Body: {'hello': 'world'}")


def test_iterator_headers(host: HostApp) -> None:
    """test_http.py::test_iterator_headers"""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = iter([(b"x-test-header", b"test value")])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
    server = host(app)
    [answer], _ = exchange_raw(server.port, SIMPLE_GET_REQUEST)
    assert answer.headers["x-test-header"] == "test value"


def test_lifespan_state_reaches_http_requests(host: HostApp) -> None:
    """test_http.py::test_lifespan_state: each request gets a copy of the lifespan state
    (a key changed in one request is not seen by the next; a mutated value is)."""
    expected_states = [{"a": 123, "b": [1]}, {"a": 123, "b": [1, 2]}]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"].update({"a": 123, "b": [1]})
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert scope["state"] == expected_states.pop(0)
        scope["state"]["a"] = 456
        scope["state"]["b"].append(2)
        await response("Hi!")(scope, receive, send)
    server = host(app, lifespan="on")
    answers, _ = exchange_raw(server.port, SIMPLE_GET_REQUEST * 2, count=2)
    assert [a.body for a in answers] == [b"Hi!", b"Hi!"] and not expected_states


# --- tests/protocols/test_websocket.py -----------------------------------------------------------

def websocket_app(on_connect: Callable[[Scope, Send], Awaitable[None]] | None = None,
                  on_receive: Callable[[Message, Send], Awaitable[None]] | None = None,
                  on_disconnect: Callable[[Message], None] | None = None) -> App:
    """Upstream's ``WebSocketResponse``: a handler per message type, until the disconnect."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.connect" and on_connect is not None:
                await on_connect(scope, send)
            elif message["type"] == "websocket.receive" and on_receive is not None:
                await on_receive(message, send)
            elif message["type"] == "websocket.disconnect":
                if on_disconnect is not None:
                    on_disconnect(message)
                return
    return app


async def accept(scope: Scope, send: Send) -> None:
    await send({"type": "websocket.accept"})


async def echo(message: Message, send: Send) -> None:
    if message.get("text") is not None:
        await send({"type": "websocket.send", "text": message["text"]})
    else:
        await send({"type": "websocket.send", "bytes": message["bytes"]})


def ws_url(server: ServerHandle, path: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def test_invalid_upgrade(host: HostApp) -> None:
    """test_websocket.py::test_invalid_upgrade"""
    server = host(websocket_app(accept))
    answer = httpx.get(server.url, headers={"upgrade": "websocket", "connection": "upgrade",
                                            "sec-webSocket-version": "11"})
    assert answer.status_code in (400, 426)


def test_accept_connection(host: HostApp) -> None:
    """test_websocket.py::test_accept_connection"""
    server = host(websocket_app(accept))
    with ws_connect(ws_url(server)) as client:
        client.ping().wait(5)


def test_shutdown(host: HostApp) -> None:
    """test_websocket.py::test_shutdown: the server stops with a WebSocket open."""
    server = host(websocket_app(accept))
    with ws_connect(ws_url(server)) as client:
        server.stop()
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)


def test_supports_permessage_deflate_extension(host: HostApp) -> None:
    """test_websocket.py::test_supports_permessage_deflate_extension (the lab's
    ws_compression knob is off by default, uvicorn's --ws-per-message-deflate on)"""
    server = host(websocket_app(accept), ws_compression=True)
    with ws_connect(ws_url(server), extensions=[ClientPerMessageDeflateFactory()]) as client:
        assert "permessage-deflate" in [extension.name for extension in client.protocol.extensions]


def test_can_disable_permessage_deflate_extension(host: HostApp) -> None:
    """test_websocket.py::test_can_disable_permessage_deflate_extension"""
    server = host(websocket_app(accept), ws_compression=False)
    with ws_connect(ws_url(server), extensions=[ClientPerMessageDeflateFactory()]) as client:
        assert "permessage-deflate" not in [extension.name for extension in client.protocol.extensions]


def test_close_connection(host: HostApp) -> None:
    """test_websocket.py::test_close_connection"""
    async def close(scope: Scope, send: Send) -> None:
        await send({"type": "websocket.close"})
    server = host(websocket_app(close))
    with pytest.raises(InvalidHandshake):
        ws_connect(ws_url(server))


def test_headers(host: HostApp) -> None:
    """test_websocket.py::test_headers"""
    seen: list[dict[bytes, bytes]] = []

    async def check(scope: Scope, send: Send) -> None:
        seen.append(dict(scope["headers"]))
        await send({"type": "websocket.accept"})
    server = host(websocket_app(check))
    with ws_connect(ws_url(server), additional_headers=[("username", "abraão")]):
        pass
    assert seen[0][b"host"].startswith(b"127.0.0.1")
    assert seen[0][b"username"] in (bytes("abraão", "utf-8"), bytes("abraão", "latin-1"))


def test_extra_headers(host: HostApp) -> None:
    """test_websocket.py::test_extra_headers"""
    async def accept_with_header(scope: Scope, send: Send) -> None:
        await send({"type": "websocket.accept", "headers": [(b"extra", b"header")]})
    server = host(websocket_app(accept_with_header))
    with ws_connect(ws_url(server)) as client:
        assert client.response.headers.get("extra") == "header"


def test_path_and_raw_path(host: HostApp) -> None:
    """test_websocket.py::test_path_and_raw_path"""
    seen: list[tuple[str, bytes]] = []

    async def check(scope: Scope, send: Send) -> None:
        seen.append((scope["path"], scope["raw_path"]))
        await send({"type": "websocket.accept"})
    server = host(websocket_app(check))
    with ws_connect(ws_url(server, "/one%2Ftwo")):
        pass
    assert seen == [("/one/two", b"/one%2Ftwo")]


@pytest.mark.parametrize("payload", ["123", b"123"], ids=["text", "binary"])
def test_send_data_to_client(host: HostApp, payload: str | bytes) -> None:
    """test_websocket.py::test_send_text_data_to_client and test_send_binary_data_to_client"""
    async def send_payload(scope: Scope, send: Send) -> None:
        await send({"type": "websocket.accept"})
        key = "text" if isinstance(payload, str) else "bytes"
        await send({"type": "websocket.send", key: payload})
    server = host(websocket_app(send_payload))
    with ws_connect(ws_url(server)) as client:
        assert client.recv(timeout=5) == payload


def test_send_and_close_connection(host: HostApp) -> None:
    """test_websocket.py::test_send_and_close_connection"""
    async def send_and_close(scope: Scope, send: Send) -> None:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "123"})
        await send({"type": "websocket.close"})
    server = host(websocket_app(send_and_close))
    with ws_connect(ws_url(server)) as client:
        assert client.recv(timeout=5) == "123"
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)


@pytest.mark.parametrize("payload", ["abc", b"abc"], ids=["text", "binary"])
def test_send_data_to_server(host: HostApp, payload: str | bytes) -> None:
    """test_websocket.py::test_send_text_data_to_server and test_send_binary_data_to_server"""
    server = host(websocket_app(accept, echo))
    with ws_connect(ws_url(server)) as client:
        client.send(payload)
        assert client.recv(timeout=5) == payload


def test_send_after_protocol_close(host: HostApp) -> None:
    """test_websocket.py::test_send_after_protocol_close"""
    raised: list[str] = []

    async def send_after_close(scope: Scope, send: Send) -> None:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "123"})
        await send({"type": "websocket.close"})
        try:
            await send({"type": "websocket.send", "text": "123"})
        except Exception as error:
            raised.append(type(error).__name__)
    server = host(websocket_app(send_after_close))
    with ws_connect(ws_url(server)) as client:
        assert client.recv(timeout=5) == "123"
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)
    assert wait_for(lambda: raised == ["ClientDisconnected"]), raised


def test_missing_handshake(host: HostApp) -> None:
    """test_websocket.py::test_missing_handshake"""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass
    server = host(app)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(ws_url(server))
    assert refused.value.response.status_code == 500


def test_send_before_handshake(host: HostApp) -> None:
    """test_websocket.py::test_send_before_handshake"""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.send", "text": "123"})
    server = host(app)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(ws_url(server))
    assert refused.value.response.status_code == 500


def test_duplicate_handshake(host: HostApp) -> None:
    """test_websocket.py::test_duplicate_handshake. The second accept is an app error after the
    handshake: the lab closes with 1011 (RFC 6455 7.4.1, an unexpected condition), where
    uvicorn drops the connection (1006). The client sees the WebSocket end either way."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.accept"})
    server = host(app)
    with ws_connect(ws_url(server)) as client, pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


def test_asgi_return_value(host: HostApp) -> None:
    """test_websocket.py::test_asgi_return_value. An app that returns (a value, here) after
    accepting ends its WebSocket: uvicorn drops the connection (1006), the lab closes it
    normally (1000), as for an app that returns None."""
    async def app(scope: Scope, receive: Receive, send: Send) -> Any:
        await send({"type": "websocket.accept"})
        return 123
    server = host(app)
    with ws_connect(ws_url(server)) as client, pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


@pytest.mark.parametrize("code", [None, 1000, 1001])
@pytest.mark.parametrize("reason", [None, "test", False],
                         ids=["none_as_reason", "normal_reason", "without_reason"])
def test_app_close(host: HostApp, code: int | None, reason: str | bool | None) -> None:
    """test_websocket.py::test_app_close"""
    async def close_on_message(message: Message, send: Send) -> None:
        reply: dict[str, Any] = {"type": "websocket.close"}
        if code is not None:
            reply["code"] = code
        if reason is not False:
            reply["reason"] = reason
        await send(reply)
    server = host(websocket_app(accept, close_on_message))
    with ws_connect(ws_url(server)) as client:
        client.ping().wait(5)
        client.send("abc")
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == (code or 1000)
    assert closed.value.rcvd.reason == (reason or "")


def test_client_close(host: HostApp) -> None:
    """test_websocket.py::test_client_close"""
    seen: list[Message] = []
    server = host(websocket_app(accept, on_disconnect=seen.append))
    with ws_connect(ws_url(server)) as client:
        client.ping().wait(5)
        client.send("abc")
        client.close(code=1001, reason="custom reason")
    expected = {"type": "websocket.disconnect", "code": 1001, "reason": "custom reason"}
    assert wait_for(lambda: seen == [expected]), seen


def test_client_connection_lost(host: HostApp) -> None:
    """test_websocket.py::test_client_connection_lost: the client's TCP connection goes
    without a close frame."""
    seen: list[Message] = []
    server = host(websocket_app(accept, on_disconnect=seen.append))
    with ws_connect(ws_url(server)) as client:
        client.socket.shutdown(socket.SHUT_RDWR)
        assert wait_for(lambda: seen == [{"type": "websocket.disconnect", "code": 1006}]), seen


def test_client_connection_lost_on_send(host: HostApp) -> None:
    """test_websocket.py::test_client_connection_lost_on_send"""
    gone, raised = threading.Event(), threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while not gone.is_set():
            await asyncio.sleep(0.01)
        try:
            await send({"type": "websocket.send", "text": "123"})
        except OSError:
            raised.set()
    server = host(app)
    with ws_connect(ws_url(server)):
        time.sleep(0.1)
    time.sleep(0.1)
    gone.set()
    assert raised.wait(5)


def test_connection_lost_before_handshake_complete(host: HostApp) -> None:
    """test_websocket.py::test_connection_lost_before_handshake_complete"""
    release = threading.Event()
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        while not release.is_set():
            await asyncio.sleep(0.01)
        seen.append(dict(await receive()))
    server = host(app)
    with connect(server.port) as sock:
        request = "".join(f"{name}: {value}\r\n" for name, value in WEBSOCKET_UPGRADE_HEADERS.items())
        sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{request}\r\n".encode())
        time.sleep(0.1)
    time.sleep(0.1)
    release.set()
    assert wait_for(lambda: seen == [{"type": "websocket.disconnect", "code": 1006}]), seen


@pytest.mark.parametrize("subprotocol", ["proto1", "proto2"])
def test_subprotocols(host: HostApp, subprotocol: str) -> None:
    """test_websocket.py::test_subprotocols"""
    async def accept_subprotocol(scope: Scope, send: Send) -> None:
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
    server = host(websocket_app(accept_subprotocol))
    with ws_connect(ws_url(server), subprotocols=["proto1", "proto2"]) as client:  # type: ignore[list-item]
        assert client.subprotocol == subprotocol


MAX_WS_BYTES = 1024 * 1024 * 16
MAX_WS_BYTES_PLUS1 = MAX_WS_BYTES + 1


@pytest.mark.parametrize("client_size_sent, server_size_max, expected_result", [
    (MAX_WS_BYTES, MAX_WS_BYTES, 0), (MAX_WS_BYTES_PLUS1, MAX_WS_BYTES, 1009), (10, 10, 0), (11, 10, 1009),
], ids=["max=defaults sent=defaults", "max=defaults sent=defaults+1", "max=10 sent=10", "max=10 sent=11"])
def test_send_binary_data_to_server_bigger_than_default(host: HostApp, client_size_sent: int,
                                                        server_size_max: int, expected_result: int) -> None:
    """test_websocket.py::test_send_binary_data_to_server_bigger_than_default_on_websockets,
    with the lab's ws_max_message_bytes for uvicorn's --ws-max-size."""
    server = host(websocket_app(accept, echo), ws_max_message_bytes=server_size_max)
    # The client's limit must also let the server's close frame (with its reason) through.
    with ws_connect(ws_url(server), max_size=max(client_size_sent, 1024)) as client:
        client.send(b"\x01" * client_size_sent)
        if expected_result == 0:
            assert client.recv(timeout=10) == b"\x01" * client_size_sent
        else:
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == expected_result


def test_server_reject_connection(host: HostApp) -> None:
    """test_websocket.py::test_server_reject_connection"""
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.close"})
        seen.append(dict(await receive()))
    server = host(app)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(ws_url(server))
    assert refused.value.response.status_code == 403
    assert wait_for(lambda: seen == [{"type": "websocket.disconnect", "code": 1006}]), seen


def test_server_can_read_messages_in_buffer_after_close(host: HostApp) -> None:
    """test_websocket.py::test_server_can_read_messages_in_buffer_after_close"""
    frames: list[bytes] = []
    seen: list[Message] = []

    async def accept_then_sleep(scope: Scope, send: Send) -> None:
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0.2)  # the client sends and closes meanwhile

    async def keep(message: Message, send: Send) -> None:
        frames.append(message["bytes"])
    server = host(websocket_app(accept_then_sleep, keep, seen.append))
    with ws_connect(ws_url(server)) as client:
        for _ in range(3):
            client.send(b"abc")
    assert wait_for(lambda: bool(seen))
    assert frames == [b"abc", b"abc", b"abc"]
    assert seen == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


def test_multiple_server_header(host: HostApp) -> None:
    """test_websocket.py::test_multiple_server_header. The app's Server headers are sent as
    given; the lab adds none of its own (uvicorn puts "uvicorn" first)."""
    async def accept_with_servers(scope: Scope, send: Send) -> None:
        await send({"type": "websocket.accept",
                    "headers": [(b"Server", b"over-ridden"), (b"Server", b"another-value")]})
    server = host(websocket_app(accept_with_servers))
    with ws_connect(ws_url(server)) as client:
        assert client.response.headers.get_all("Server") == ["over-ridden", "another-value"]


def test_lifespan_state_reaches_websockets(host: HostApp) -> None:
    """test_websocket.py::test_lifespan_state"""
    states: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            assert (await receive())["type"] == "lifespan.startup" and "state" in scope
            scope["state"]["a"] = 123
            scope["state"]["b"] = [1]
            await send({"type": "lifespan.startup.complete"})
            assert (await receive())["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        states.append({"a": scope["state"]["a"], "b": list(scope["state"]["b"])})
        scope["state"]["a"] = 456
        scope["state"]["b"].append(2)
        await send({"type": "websocket.accept"})
        await receive()
    server = host(app, lifespan="on")
    for _ in range(2):
        with ws_connect(ws_url(server)):
            pass
    assert states == [{"a": 123, "b": [1]}, {"a": 123, "b": [1, 2]}]


# --- tests/test_lifespan.py ----------------------------------------------------------------------

def lifespan_app(events: list[str], *, startup: str = "complete", shutdown: str = "complete",
                 raise_after: bool = False) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            events.append((await receive())["type"])
            await send({"type": f"lifespan.startup.{startup}", "message": "the lifespan event failed"})
            if startup == "failed":
                if raise_after:
                    raise RuntimeError()
                return
            events.append((await receive())["type"])
            await send({"type": f"lifespan.shutdown.{shutdown}", "message": "the lifespan event failed"})
            if raise_after:
                raise RuntimeError()
            return
        await response("ok")(scope, receive, send)
    return app


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_lifespan_on(mode: str) -> None:
    """test_lifespan.py::test_lifespan_on and test_lifespan_auto"""
    events: list[str] = []
    server = start_server(app=lifespan_app(events), lifespan=mode)
    try:
        assert events == ["lifespan.startup"]
        assert httpx.get(server.url).text == "ok"
    finally:
        server.stop()
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_off() -> None:
    """test_lifespan.py::test_lifespan_off"""
    events: list[str] = []
    with start_server(app=lifespan_app(events), lifespan="off") as server:
        assert httpx.get(server.url).text == "ok"
    assert events == []


def test_lifespan_auto_with_error() -> None:
    """test_lifespan.py::test_lifespan_auto_with_error: an app that fails on the lifespan
    scope is taken not to speak it, and is served."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        await response("ok")(scope, receive, send)
    with start_server(app=app, lifespan="auto") as server:
        assert httpx.get(server.url).text == "ok"


def test_lifespan_on_with_error() -> None:
    """test_lifespan.py::test_lifespan_on_with_error: with lifespan on, the error ends the start."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError()
    with pytest.raises(ServerError) as raised:
        start_server(app=app, lifespan="on")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("mode", ["auto", "on"])
@pytest.mark.parametrize("raise_exception", [True, False])
def test_lifespan_with_failed_startup(mode: str, raise_exception: bool) -> None:
    """test_lifespan.py::test_lifespan_with_failed_startup: the start fails, with the app's
    message, in one line."""
    events: list[str] = []
    with pytest.raises(ServerError) as raised:
        start_server(app=lifespan_app(events, startup="failed", raise_after=raise_exception), lifespan=mode)
    assert "the lifespan event failed" in str(raised.value) and "\n" not in str(raised.value)


def test_lifespan_scope_asgi3app() -> None:
    """test_lifespan.py::test_lifespan_scope_asgi3app (in auto mode: the lab's "on" insists on a
    startup.complete, which this app, returning at once, does not send)."""
    scopes: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            scopes.append(dict(scope))
            return
        await response("ok")(scope, receive, send)
    with start_server(app=app, lifespan="auto") as server:
        assert httpx.get(server.url).text == "ok"
    assert scopes == [{"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}]


@pytest.mark.parametrize("mode", ["auto", "on"])
@pytest.mark.parametrize("raise_exception", [True, False])
def test_lifespan_with_failed_shutdown(mode: str, raise_exception: bool,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """test_lifespan.py::test_lifespan_with_failed_shutdown: the stop completes and the app's
    message is logged as an error."""
    events: list[str] = []
    server = start_server(app=lifespan_app(events, shutdown="failed", raise_after=raise_exception),
                          lifespan=mode)
    server.stop()
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert any("the lifespan event failed" in message for message in errors), errors


def test_lifespan_state() -> None:
    """test_lifespan.py::test_lifespan_state: what startup puts in the state is the server's
    state for the app's requests."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            scope["state"]["foo"] = 123
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await response(str(scope["state"]))(scope, receive, send)
    with start_server(app=app, lifespan="on") as server:
        assert httpx.get(server.url).text == "{'foo': 123}"

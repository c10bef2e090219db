"""Strict HTTP/1.1 (RFC 9112): ambiguous framing is refused, every request gets one answer."""

from __future__ import annotations

import contextlib
import socket
import time

import httptools
import pytest
from rawhttp import GET_FAST, Answer, Reader, connect, exchange, head_of

NO_HOST = b"GET /fast HTTP/1.1\r\n\r\n"
TWO_HOSTS = b"GET /fast HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
HTTP10_NO_HOST = b"GET /fast HTTP/1.0\r\n\r\n"
TE_IDENTITY_CHUNKED = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity, chunked\r\n\r\n"
                       b"3\r\nabc\r\n0\r\n\r\n")
TE_GZIP_CHUNKED = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                   b"3\r\nabc\r\n0\r\n\r\n")
TWO_TE_HEADERS = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
CHUNKED = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
UPGRADE_H2C = (b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
UPGRADE_WEBSOCKET = (b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
CONNECT = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
OPTIONS_STAR = b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"
HEAD_STREAM = b"HEAD /stream/2 HTTP/1.1\r\nHost: t\r\n\r\n"
EXPECT_CONTINUE_HEAD = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                        b"Expect: 100-continue\r\n\r\n")


class _Counter:
    """Counts complete responses in a byte stream (after a HEAD, none of them has a body)."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        self.answers.append(self.parser.get_status_code())


def answers_until_close(request: bytes, port: int, wait: float = 2.0) -> tuple[list[int], bytes]:
    """Send ``request``, read until the server closes (or ``wait`` passes); the statuses."""
    data = b""
    with connect(port) as sock:
        sock.sendall(request)
        sock.settimeout(wait)
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    counter = _Counter()
    with contextlib.suppress(httptools.HttpParserUpgrade):
        counter.parser.feed_data(data)
    return counter.answers, data


@pytest.mark.parametrize("request_bytes", [NO_HOST, TWO_HOSTS], ids=["no-host", "two-hosts"])
def test_an_http11_request_needs_exactly_one_host(server, request_bytes):
    statuses, _ = answers_until_close(request_bytes, server.port)
    assert statuses == [400]
    assert exchange(server.port, GET_FAST).body == b"OK"


def test_http10_may_leave_host_out(server):
    statuses, _ = answers_until_close(HTTP10_NO_HOST, server.port)
    assert statuses == [200]


@pytest.mark.parametrize("request_bytes", [TE_IDENTITY_CHUNKED, TE_GZIP_CHUNKED, TWO_TE_HEADERS],
                         ids=["identity-chunked", "gzip-chunked", "two-headers"])
def test_transfer_codings_other_than_chunked_are_refused(server, request_bytes):
    statuses, _ = answers_until_close(request_bytes, server.port)
    assert statuses in ([400], [501])
    assert exchange(server.port, GET_FAST).body == b"OK"


def test_chunked_alone_is_read(server):
    assert exchange(server.port, CHUNKED).body == b"abc"


@pytest.mark.parametrize("request_bytes", [UPGRADE_H2C, UPGRADE_WEBSOCKET, CONNECT, OPTIONS_STAR],
                         ids=["h2c", "websocket", "connect", "options-star"])
def test_one_answer_per_request_even_when_asked_to_switch_protocols(server, request_bytes):
    statuses, data = answers_until_close(request_bytes, server.port)
    assert len(statuses) == 1, data
    assert data.count(b"HTTP/1.1 ") == 1, data


def test_an_upgrade_that_is_not_taken_is_answered_and_closed(server):
    statuses, data = answers_until_close(UPGRADE_H2C + GET_FAST, server.port)
    assert statuses == [200]
    assert b"Connection: close" in data


def test_head_on_a_streamed_route_sends_the_head_only(server):
    with connect(server.port) as sock:
        sock.sendall(HEAD_STREAM + GET_FAST)
        head = head_of(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        answer = Reader(sock).response()  # the next answer starts right after the head
    assert answer.status == 200 and answer.body == b"OK"


def test_expect_100_continue_gets_100_before_the_body(server):
    with connect(server.port) as sock:
        sock.sendall(EXPECT_CONTINUE_HEAD)
        sock.settimeout(0.5)
        started = time.monotonic()
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert time.monotonic() - started < 0.5
        sock.settimeout(5)
        sock.sendall(b"hello")
        answer = Reader(sock).response()
    assert answer.status == 200 and answer.body == b"hello"


def test_expect_100_continue_with_a_body_too_large_gets_413_at_once(make_server):
    server = make_server(max_body_bytes=10)
    with connect(server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        sock.settimeout(0.5)
        answer = Reader(sock).response()
    assert answer.status == 413


def test_an_error_answer_reaches_a_client_that_keeps_sending(server):
    """A lingering close: the 400 arrives even though the client's bytes are still unread."""
    with connect(server.port) as sock:
        sock.sendall(NO_HOST + b"x" * 200_000)
        sock.settimeout(5)
        answer: Answer = Reader(sock).response()
        assert answer.status == 400
        try:
            sock.sendall(b"y" * 1000)  # still accepted (and dropped) while the server lingers
        except (BrokenPipeError, ConnectionResetError):
            pytest.fail("the server reset the connection instead of lingering")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""  # then it closes in order


@pytest.mark.parametrize("host", [b"a b", b"a/b", b"a@b", b"\xe9.example"])
def test_a_host_that_is_not_a_host_is_refused(server, host):
    statuses, _ = answers_until_close(b"GET /fast HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", server.port)
    assert statuses == [400]


@pytest.mark.parametrize("host", [b"example.com", b"127.0.0.1:8080", b"[::1]:80", b"xn--bcher-kva.example"])
def test_a_host_with_or_without_a_port_is_taken(server, host):
    assert exchange(server.port, b"GET /fast HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").status == 200


@pytest.mark.parametrize("version", [b"2.0", b"0.9"])
def test_a_version_the_server_does_not_speak_gets_505(server, version):
    statuses, _ = answers_until_close(b"GET /fast HTTP/" + version + b"\r\nHost: t\r\n\r\n", server.port)
    assert statuses == [505]


def test_an_absolute_form_target_is_routed_by_its_path(server):
    # RFC 9112 section 3.2.2: a server must accept the absolute form (proxies send it).
    answer = exchange(server.port, b"GET http://t/fast?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answer.status == 200 and answer.body == b"OK"


@pytest.mark.parametrize("method", [b"FOO", b"get", b"BREW"])
def test_a_method_the_server_does_not_know_gets_501(server, method):
    # RFC 9110 section 9.1: an unrecognized method is a 501, not a malformed request.
    statuses, body = answers_until_close(method + b" /fast HTTP/1.1\r\nHost: t\r\n\r\n", server.port)
    assert statuses == [501] and b"method " + method + b" is not implemented" in body
    assert server.stats()["errors"]["not_implemented"] >= 1


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                                     b"(GET) /fast HTTP/1.1\r\n\r\n", b"FOO\r\n\r\n"])
def test_bytes_that_are_no_request_line_stay_a_400(server, garbage):
    statuses, _ = answers_until_close(garbage, server.port)
    assert statuses == [400]


def test_an_unknown_method_after_pipelined_requests_is_still_a_501(server):
    # The parser does not say where it stopped: the answer must not depend on where it began.
    pipeline = (b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n" * 2 + b"POST /echo HTTP/1.1\r\nHost: t\r\n"
                b"Content-Length: 3\r\n\r\nabc" + b"PROPFIND /fast HTTP/1.1\r\nHost: t\r\n\r\n"
                + b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n")
    statuses, body = answers_until_close(pipeline, server.port)
    assert statuses[:3] == [200, 200, 200] and statuses[-1] == 501, statuses  # PROPFIND: llhttp's, routed
    assert b"method BREW is not implemented" in body


# Issue 23: what RFC 9110/9112 say of versions, HTTP/1.0 framing and Host ports.
TE_IN_HTTP10 = (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\n\r\n")
EXPECT_IN_HTTP10 = b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"


def test_transfer_encoding_in_http10_is_a_400_and_a_close(server):
    # RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    statuses, data = answers_until_close(TE_IN_HTTP10 + GET_FAST, server.port)
    assert statuses == [400], data
    assert b"Connection: close" in data


def test_a_higher_minor_version_of_http1_is_read_as_11(server):
    # RFC 9110 section 2.5: a recipient treats a higher minor version as the highest it speaks.
    with connect(server.port) as sock:
        sock.sendall(b"GET /fast HTTP/1.2\r\nHost: t\r\n\r\n" + GET_FAST)
        reader = Reader(sock)
        first, second = reader.response(), reader.response()  # kept alive, as HTTP/1.1 is
    assert (first.status, first.body, second.status) == (200, b"OK", 200)


@pytest.mark.parametrize("version", [b"3.0", b"2.1", b"9.9"])
def test_any_other_major_version_gets_505_as_http2_does(server, version):
    statuses, _ = answers_until_close(b"GET /fast HTTP/" + version + b"\r\nHost: t\r\n\r\n", server.port)
    assert statuses == [505]


@pytest.mark.parametrize("host", [b"x:abc", b"x:99999999", b"x:65536", b"x:1:2", b"[::1]x", b"[::1",
                                  b"a]b:80", b"x:080808"])
def test_a_host_whose_port_is_no_port_is_refused(server, host):
    statuses, data = answers_until_close(b"GET /fast HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", server.port)
    assert statuses == [400]
    assert b"Host" in data


@pytest.mark.parametrize("host", [b"x:65535", b"x:", b"[::1]", b"[::1]:0"])
def test_a_port_at_the_edges_of_the_range_is_taken(server, host):
    assert exchange(server.port, b"GET /fast HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").status == 200


def test_expect_100_continue_in_http10_is_ignored(server):
    # RFC 9110 section 10.1.1: a server MUST ignore a 100-continue expectation in HTTP/1.0.
    with connect(server.port) as sock:
        sock.sendall(EXPECT_IN_HTTP10)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        sock.settimeout(5)
        sock.sendall(b"hello")
        answer = Reader(sock).response()
    assert answer.status == 200 and answer.body == b"hello"


@pytest.mark.parametrize("size_line", [b"200000", b"fffffffffff", b"100001;name=value"])
def test_a_chunk_larger_than_the_body_limit_gets_413_at_once(server, size_line):
    # The README's promise: 413 before the body arrives, as for a Content-Length over it.
    with connect(server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n" + size_line + b"\r\nxy")
        sock.settimeout(2)
        answer = Reader(sock).response()
    assert answer.status == 413


def test_a_chunk_size_line_split_over_reads_is_still_measured(server):
    with connect(server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1")
        time.sleep(0.05)
        sock.sendall(b"00001\r\n")
        sock.settimeout(2)
        answer = Reader(sock).response()
    assert answer.status == 413


def test_chunks_within_the_limit_are_still_read_whole(make_server):
    server = make_server(max_body_bytes=10)
    assert exchange(server.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n").body == b"helloworld"

"""The compiled head scanner (lab/http/_headscan.c) agrees with llhttp, or leaves the head to it.

scan_head may parse only heads llhttp would parse the same way; anything else it must leave
(None). Two checks with generated heads -- plain ones and near misses: wherever scan_head
accepts a head, llhttp parses those bytes to the same request; and a connection answers any
bytes, however split, exactly as it does with the scanner switched off.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from fakes import FAST, FINAL, WELL_FORMED, LlhttpRecorder, answers, heads, split_at
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lab.http.connection as connection_module

scan_head = connection_module.scan_head
LIMIT = 8192

def test_the_scanner_is_built_where_the_lab_is_installed() -> None:
    # pip install builds it from lab/http/_headscan.c; without it every head goes through a
    # Python callback per llhttp event, ~40 % more instructions per request.
    assert scan_head is not None, "lab/http/_headscan.c was not compiled: reinstall with pip install -e ."


def test_serve_says_when_the_scanner_is_missing(capsys) -> None:
    from lab.cli.serve import announce
    from lab.http.config import ServerConfig

    with mock.patch.object(connection_module, "scan_head", None):
        announce(ServerConfig(), 8080)
    assert "_headscan.c was not compiled" in capsys.readouterr().out
    announce(ServerConfig(), 8080)
    assert "_headscan" not in capsys.readouterr().out


def test_a_plain_head_is_parsed_in_one_call() -> None:
    data = bytearray(b"GET /users/42?x=1&y HTTP/1.1\r\nHost: t\r\nX-Id: a b\tc\r\n\r\n" + FAST)
    first = scan_head(data, 0, len(data), LIMIT)
    assert first == (len(data) - len(FAST), "GET", "/users/42", "x=1&y",
                     [(b"Host", b"t"), (b"X-Id", b"a b\tc")])
    assert scan_head(data, first[0], len(data), LIMIT) == (len(data), "GET", "/fast", "", [(b"Host", b"t")])


@pytest.mark.parametrize("head", [
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",  # a body, however empty
    b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /fast HTTP/1.1\r\nHost: t\r\nconnection: keep-alive, Upgrade\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n",
    b"GET /fast HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
    b"GET /fast HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /fast HTTP/1.1\r\n\r\n",  # no Host
    b"GET /fast HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",  # two
    b"GET /fast HTTP/1.0\r\nHost: t\r\n\r\n",
    b"GET /fast HTTP/1.1\nHost: t\n\n",  # bare LF line ends
    b"GET /fast HTTP/1.1\r\nHost: t\r\nX:  padded \r\n\r\n",  # outer whitespace in a value
    b"GET /fast HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",  # obs-fold
    b"GET /a#frag HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /fast HTTP/1.1\r\nHost: t\r\n",  # incomplete
])
def test_heads_outside_the_plain_subset_are_left_to_llhttp(head: bytes) -> None:
    assert scan_head(head, 0, len(head), LIMIT) is None


def test_connection_keep_alive_is_http_11s_default_said_aloud() -> None:
    head = b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: Keep-Alive\r\n\r\n"
    assert scan_head(head, 0, len(head), LIMIT) == (
        len(head), "GET", "/fast", "", [(b"Host", b"t"), (b"Connection", b"Keep-Alive")])


def test_a_head_over_the_limit_is_left_to_llhttp() -> None:
    # The limit counts as the connection does: the target, and name + value + 4 per header.
    head = b"GET /fast HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 100 + b"\r\n\r\n"
    counted = len(b"/fast") + (4 + 1 + 4) + (5 + 100 + 4)
    assert scan_head(head, 0, len(head), counted) is not None
    assert scan_head(head, 0, len(head), counted - 1) is None


@pytest.mark.parametrize("separator", [b":", b": "])
def test_at_the_header_limit_the_scanner_and_llhttp_answer_alike(loop, separator: bytes) -> None:
    # Headers without a space after the colon count one byte more than their line holds: a
    # limit on raw bytes would let through a head the connection refuses with 431.
    head = (b"GET /fast HTTP/1.1\r\nHost" + separator + b"t\r\n"
            + b"".join(b"X-Header-%02d" % i + separator + b"v\r\n" for i in range(25)) + b"\r\n")
    counted = len(b"/fast") + (4 + 1 + 4) + 25 * (11 + 1 + 4)
    for limit in (counted - 1, counted, counted + 1, len(head) - 1, len(head)):
        scanned = answers(loop, [head], max_header_bytes=limit, read_buffer_bytes=4096)
        with mock.patch.object(connection_module, "scan_head", None):
            assert answers(loop, [head], max_header_bytes=limit, read_buffer_bytes=4096) == scanned, limit


def test_bounds_outside_the_buffer_are_refused() -> None:
    with pytest.raises(ValueError, match="within the buffer"):
        scan_head(b"GET / HTTP/1.1\r\n", 0, 100, LIMIT)
    with pytest.raises(ValueError, match="within the buffer"):
        scan_head(b"GET / HTTP/1.1\r\n", -1, 4, LIMIT)
    with pytest.raises(TypeError):
        scan_head("GET / HTTP/1.1\r\n", 0, 4, LIMIT)


@settings(max_examples=2000, deadline=None)
@given(head=heads(), tail=st.sampled_from((b"", FAST, b"GET /fast HT")))
@example(head=b"GET /a?b?c HTTP/1.1\r\nHost: t\r\n\r\n", tail=b"")
@example(head=b"GET /? HTTP/1.1\r\nHost:t\r\n\r\n", tail=b"")
def test_wherever_the_scanner_accepts_a_head_llhttp_reads_the_same_request(head: bytes, tail: bytes) -> None:
    data = head + tail
    scanned = scan_head(data, 0, len(data), LIMIT)
    if scanned is None:
        return
    next_offset, method, path, query, headers = scanned
    assert next_offset == len(head)
    llhttp = LlhttpRecorder()
    llhttp.parser.feed_data(head)  # raises if llhttp finds the head malformed
    assert llhttp.complete == 1
    target_path, mark, target_query = llhttp.url.partition(b"?")
    assert (method, path, query) == (llhttp.parser.get_method().decode(), target_path.decode("latin-1"),
                                     target_query.decode("latin-1") if mark else "")
    assert headers == llhttp.headers
    assert llhttp.parser.get_http_version() == "1.1"
    assert llhttp.parser.should_keep_alive() and not llhttp.parser.should_upgrade()


@settings(max_examples=300, deadline=None)
@given(pipeline=st.lists(st.one_of(heads(), st.sampled_from(WELL_FORMED)), min_size=1, max_size=5),
       last=st.sampled_from((b"", *FINAL)),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
       read_buffer=st.sampled_from((256, 300, 4096)),
       header_limit=st.sampled_from((256, 300, 16 * 1024)))
def test_a_connection_answers_the_same_with_the_scanner_or_without(
        loop, pipeline: list[bytes], last: bytes, cuts: list[int], read_buffer: int,
        header_limit: int) -> None:
    reads = split_at(b"".join(pipeline) + last, cuts)
    knobs = {"read_buffer_bytes": read_buffer, "max_header_bytes": header_limit}
    scanned = answers(loop, reads, **knobs)
    with mock.patch.object(connection_module, "scan_head", None):
        assert answers(loop, reads, **knobs) == scanned


def test_a_knob_change_while_a_read_is_answered_does_not_lose_the_rest_of_that_read(loop) -> None:
    # A handler that changes the read buffer (as a reconfigure may) gets a new buffer made for
    # the next read; the rest of this read -- here a POST, parsed by llhttp -- is still where
    # it was read, and must be answered from there.
    import dataclasses

    from fakes import ECHO, RecordingTransport

    from lab.http.config import ServerConfig
    from lab.http.connection import HttpConnection
    from lab.http.demo_routes import demo_router
    from lab.http.messages import Response
    from lab.http.state import ServerState, Settings

    router = demo_router()
    state = ServerState(ServerConfig(), router, loop)

    def grow(request: Any) -> Response:
        bigger = dataclasses.replace(Settings.from_config(ServerConfig()), read_buffer_bytes=8192)
        request.connection.apply_settings(bigger)
        return Response.text("grown\n")

    router.add("GET", "/grow", grow)
    connection = HttpConnection(state)
    transport = RecordingTransport()
    connection.connection_made(transport)
    data = b"GET /grow HTTP/1.1\r\nHost: t\r\n\r\n" + ECHO
    connection.get_buffer(len(data))[:len(data)] = data
    connection.buffer_updated(len(data))
    written = bytes(transport.written)
    assert written.count(b"HTTP/1.1 200 OK") == 2, written
    assert written.endswith(b"hello world")


@pytest.fixture(scope="module")
def process_server() -> Any:
    from lab.server import start_server

    with start_server(isolation="process") as handle:
        yield handle


@settings(max_examples=3, deadline=None)
@given(batch=st.lists(heads(), min_size=100, max_size=100))
def test_a_server_fed_generated_heads_over_sockets_keeps_answering(process_server: Any,
                                                                   batch: list[bytes]) -> None:
    # The hostile client's view of the scanner: a hundred connections at once, each sending a
    # generated head (plain or a near miss) and a /fast behind it, over real sockets, to a
    # server in a process of its own (a crash in C would end that process).
    import socket

    from rawhttp import Reader, connect

    sockets = [connect(process_server.port, timeout=5) for _ in batch]
    try:
        for sock, head in zip(sockets, batch, strict=True):
            sock.sendall(head + FAST)
        for sock in sockets:
            sock.shutdown(socket.SHUT_WR)
    finally:
        for sock in sockets:
            sock.close()
    with connect(process_server.port) as probe:
        probe.sendall(FAST)
        assert Reader(probe).response().status == 200
    assert all(pid_alive(pid) for pid in process_server.pids)


def pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# Issue 23's vectors: versions, HTTP/1.0 framing, Host ports, chunk sizes. Each is answered
# alike with the scanner and without, however it is cut, with the status RFC 9110/9112 give.
RFC_VECTORS = {
    b"GET /fast HTTP/1.2\r\nHost: t\r\n\r\n": 200,
    b"GET /fast HTTP/3.0\r\nHost: t\r\n\r\n": 505,
    b"GET /fast HTTP/2.0\r\nHost: t\r\n\r\n": 505,
    b"GET /fast HTTP/1.1\r\nHost: x:abc\r\n\r\n": 400,
    b"GET /fast HTTP/1.1\r\nHost: x:99999999\r\n\r\n": 400,
    b"GET /fast HTTP/1.1\r\nHost: x:65536\r\n\r\n": 400,
    b"GET /fast HTTP/1.1\r\nHost: [::1]x\r\n\r\n": 400,
    b"GET /fast HTTP/1.1\r\nHost: x:65535\r\n\r\n": 200,
    b"GET /fast HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n": 200,
    b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n": 400,
    b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi": 200,
    b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n200000\r\nxy": 413,
}


@pytest.mark.parametrize("request_bytes", list(RFC_VECTORS))
@pytest.mark.parametrize("cut", [None, 9, 21, 40, 60])
def test_rfc_vectors_are_answered_alike_with_the_scanner_or_without(loop, request_bytes: bytes,
                                                                    cut: int | None) -> None:
    reads = [request_bytes] if cut is None else split_at(request_bytes, [cut])
    scanned = answers(loop, reads)
    with mock.patch.object(connection_module, "scan_head", None):
        assert answers(loop, reads) == scanned
    written, _ = scanned
    statuses = [int(line[9:12]) for line in written.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    assert statuses[-1:] == [RFC_VECTORS[request_bytes]], written
    assert 100 not in statuses  # the only Expect here is HTTP/1.0's, which is ignored

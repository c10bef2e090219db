"""Bad input gets its status, and the server keeps answering everyone else."""

from __future__ import annotations

import socket
import time

import pytest
from rawhttp import GET_FAST, Reader, close_kind, connect, exchange, get

MALFORMED_REQUEST_LINE = b"GET /fast HTTP/1.1 extra\r\nHost: t\r\n\r\n"
MALFORMED_HEADER = b"GET /fast HTTP/1.1\r\nHost t\r\n\r\n"
BOTH_LENGTH_AND_CHUNKED = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
TWO_CONTENT_LENGTHS = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"


def assert_still_serving(port: int) -> None:
    assert exchange(port, GET_FAST).body == b"OK"


def answer_and_close(port: int, request: bytes) -> tuple[int, str]:
    with connect(port) as sock:
        sock.sendall(request)
        status = Reader(sock).response().status
        return status, close_kind(sock)


@pytest.mark.parametrize("request_bytes", [MALFORMED_REQUEST_LINE, MALFORMED_HEADER,
                                           BOTH_LENGTH_AND_CHUNKED, TWO_CONTENT_LENGTHS],
                         ids=["request-line", "header", "length-and-chunked", "two-lengths"])
def test_malformed_requests_get_400_and_close(server, request_bytes):
    assert answer_and_close(server.port, request_bytes) == (400, "fin")
    assert server.stats()["errors"]["bad_request"] == 1
    assert_still_serving(server.port)


def test_headers_over_the_limit_get_431(make_server):
    server = make_server(max_header_bytes=1024)
    request = get("/fast", "X-Big: " + "a" * 2000)
    assert answer_and_close(server.port, request) == (431, "fin")
    assert_still_serving(server.port)


def test_request_target_over_the_limit_gets_414(make_server):
    server = make_server(max_header_bytes=1024)
    assert answer_and_close(server.port, get("/fast?" + "q" * 2000)) == (414, "fin")
    assert_still_serving(server.port)


def test_body_over_the_limit_gets_413_without_being_read(make_server):
    server = make_server(max_body_bytes=1000)
    request = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    assert answer_and_close(server.port, request) == (413, "fin")
    assert_still_serving(server.port)


def test_chunked_body_over_the_limit_gets_413(make_server):
    server = make_server(max_body_bytes=1000)
    chunk = b"x" * 800
    request = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"320\r\n" + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
    assert answer_and_close(server.port, request) == (413, "fin")
    assert_still_serving(server.port)


def test_unknown_path_is_404_and_keeps_the_connection(server):
    with connect(server.port) as sock:
        reader = Reader(sock)
        sock.sendall(get("/nowhere"))
        assert reader.response().status == 404
        sock.sendall(GET_FAST)
        assert reader.response().body == b"OK"


def test_wrong_method_is_405_with_allow(server):
    answer = exchange(server.port, b"DELETE /fast HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answer.status == 405
    assert answer.headers["allow"] == "GET, HEAD"
    assert_still_serving(server.port)


def test_bad_route_parameter_is_400(server):
    assert exchange(server.port, get("/delay/abc")).status == 400
    assert exchange(server.port, get("/bytes/-1")).status == 400


def test_slow_headers_are_cut_off_after_the_header_timeout(make_server):
    server = make_server(header_timeout_seconds=0.3)
    with connect(server.port) as sock:
        sock.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n")  # and then nothing more
        started = time.monotonic()
        assert Reader(sock).response().status == 408
        assert close_kind(sock) == "fin"
        assert 0.25 <= time.monotonic() - started < 3
    assert server.stats()["errors"]["header_timeout"] == 1
    assert_still_serving(server.port)


def test_silent_connection_is_cut_off_after_the_header_timeout(make_server):
    server = make_server(header_timeout_seconds=0.3)
    with connect(server.port) as sock:
        assert Reader(sock).response().status == 408
    assert_still_serving(server.port)


def test_connections_over_the_limit_get_503(make_server):
    server = make_server(max_connections=2)
    held = [connect(server.port) for _ in range(2)]
    try:
        for sock in held:  # make sure both are accepted before the third arrives
            sock.sendall(GET_FAST)
            Reader(sock).response()
        with connect(server.port) as extra:
            assert Reader(extra).response().status == 503
            assert close_kind(extra) == "fin"
        assert server.stats()["errors"]["over_capacity"] == 1
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.1)
    assert_still_serving(server.port)


def test_client_that_vanishes_mid_request_harms_nobody(server):
    sock = connect(server.port)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # reset, mid-body
    assert_still_serving(server.port)


# Python refuses to convert a decimal text of more than 4300 digits: a parameter that long
# was a 500 with a traceback echoing it. Every number a client sends is checked for its range
# before it is converted, and out of range is a 400 that names the range.
HUGE = "9" * 5000


@pytest.mark.parametrize(("path", "limit"), [
    (f"/bytes/{HUGE}", "from 0 to 268435456"), (f"/stream/{HUGE}", "from 0 to 10000"),
    (f"/delay/{HUGE}", "from 0 to 60000"), (f"/work/{HUGE}", "from 0 to 1000000"),
    (f"/delay/1?slow_percent=1&slow_ms={HUGE}", "from 0 to 60000"),
    (f"/delay/1?slow_percent={HUGE}&slow_ms=1", "from 0 to 100"),
    ("/work/1_000", "from 0 to 1000000")])
def test_a_number_out_of_range_in_a_path_or_query_is_a_400_naming_the_limit(server, caplog, path, limit):
    with connect(server.port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        answer = Reader(sock).response()
    assert answer.status == 400
    assert limit.encode() in answer.body
    assert len(answer.body) < 300  # the value is not echoed whole
    assert "handler_error" not in server.stats()["errors"]
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
    assert_still_serving(server.port)


def test_leading_zeros_do_not_make_a_number_too_long(server):
    assert exchange(server.port, get("/bytes/" + "0" * 5000 + "3")).body == b"xxx"


def test_a_websocket_stream_of_too_many_messages_is_refused_at_the_handshake(server):
    with connect(server.port) as sock:
        sock.sendall(f"GET /ws/stream/{HUGE} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                     "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        answer = Reader(sock).response()
    assert answer.status == 400
    assert b"from 0 to 10000" in answer.body
    assert "handler_error" not in server.stats()["errors"]


# A trickling client: a gap timeout alone lets one byte just inside each gap hold a
# connection for ever; a minimum rate after a grace period (mod_reqtimeout's) ends it.
def trickle(port: int, start: bytes, piece: bytes, every_s: float, limit_s: float) -> tuple[bytes, float]:
    """Send ``start``, then ``piece`` every ``every_s`` until an answer comes or ``limit_s``
    pass; the answer's first bytes (b"" if none) and when it came."""
    with connect(port) as sock:
        sock.sendall(start)
        started = time.monotonic()
        sock.settimeout(every_s)
        while time.monotonic() - started < limit_s:
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(piece)
                except OSError:  # the server closed between two pieces: read its answer
                    continue
                continue
            return answer, time.monotonic() - started
    return b"", limit_s


TRICKLED_POST = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nx"


def test_a_body_trickled_inside_every_gap_is_ended_by_the_minimum_rate(make_server):
    # 10 bytes/s, each gap far inside the 10 s body timeout, against a 100 bytes/s minimum.
    server = make_server(body_min_bytes_per_second=100, min_rate_grace_seconds=0.5)
    answer, after = trickle(server.port, TRICKLED_POST, b"x", every_s=0.1, limit_s=8)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"body_min_bytes_per_second" in answer
    assert after < 5  # the grace and a sweep or two, on a loaded machine
    assert server.stats()["errors"] == {"body_too_slow": 1}
    assert_still_serving(server.port)


def test_a_head_trickled_inside_the_header_timeout_is_ended_by_the_minimum_rate(make_server):
    server = make_server(header_min_bytes_per_second=100, min_rate_grace_seconds=0.5,
                         header_timeout_seconds=60)
    answer, after = trickle(server.port, b"GET /fast HTTP/1.1\r\nHost: t\r\nX-Slow: ", b"a",
                            every_s=0.1, limit_s=8)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"header_min_bytes_per_second" in answer
    assert after < 5
    assert server.stats()["errors"] == {"header_too_slow": 1}


def test_a_body_above_the_minimum_rate_is_read_whole(make_server):
    # 1000 bytes/s, ten times the minimum, for longer than the grace: the rate is an average.
    server = make_server(body_min_bytes_per_second=100, min_rate_grace_seconds=0.3)
    body = b"y" * 1500
    with connect(server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1500\r\n\r\n")
        for offset in range(0, len(body), 100):
            time.sleep(0.1)
            sock.sendall(body[offset:offset + 100])
        answer = Reader(sock).response()
    assert answer.status == 200 and answer.body == body
    assert server.stats()["errors"] == {}


def test_no_minimum_rate_leaves_only_the_gap_timeout(make_server):
    server = make_server(body_min_bytes_per_second=None, min_rate_grace_seconds=0.2)
    answer, after = trickle(server.port, TRICKLED_POST, b"x", every_s=0.1, limit_s=1.5)
    assert answer == b"" and after == 1.5  # still reading: 15 bytes of 100,000 in 1.5 s
    server.reconfigure(body_min_bytes_per_second=100)  # from the next request on
    answer, _ = trickle(server.port, TRICKLED_POST, b"x", every_s=0.1, limit_s=8)
    assert answer.startswith(b"HTTP/1.1 408 ")

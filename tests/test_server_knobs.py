"""Each TCP/HTTP knob of the server has an effect a client on a real socket can see."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from rawhttp import GET_FAST, GET_FAST_CLOSE, Reader, close_kind, connect, exchange, get, timed_requests

# One small split-write response per request. A new connection starts in quick-ACK mode, so
# the first exchanges are fast; the median over this many shows the steady state.
NAGLE_REQUESTS = 25


def test_nagle_with_split_writes_stalls_about_40ms(make_server):
    server = make_server(nodelay=False, split_writes=True)
    latencies = timed_requests(server.port, GET_FAST, NAGLE_REQUESTS)
    assert statistics.median(latencies) >= 30, latencies


def test_nodelay_removes_the_split_write_stall(make_server):
    server = make_server(nodelay=True, split_writes=True)
    latencies = timed_requests(server.port, GET_FAST, NAGLE_REQUESTS)
    assert statistics.median(latencies) < 5, latencies


def test_quickack_on_the_server_does_not_remove_the_stall_of_its_own_writes(make_server):
    # The ACK that Nagle waits for is the *client's* delayed ACK, so quick ACKs from the
    # server change nothing here: a lesson the teaching notebook builds on.
    server = make_server(nodelay=False, split_writes=True, quickack=True)
    latencies = timed_requests(server.port, GET_FAST, NAGLE_REQUESTS)
    assert statistics.median(latencies) >= 30, latencies


def test_default_close_is_orderly(make_server):
    server = make_server()
    with connect(server.port) as sock:
        sock.sendall(GET_FAST_CLOSE)
        assert Reader(sock).response().status == 200
        assert close_kind(sock) == "fin"


def test_linger_zero_closes_with_a_reset(make_server):
    server = make_server(linger_seconds=0)
    with connect(server.port) as sock:
        sock.sendall(GET_FAST_CLOSE)
        assert Reader(sock).response().status == 200
        assert close_kind(sock) == "reset"


def test_keepalive_max_requests_closes_after_that_many(make_server):
    server = make_server(keepalive_max_requests=3)
    with connect(server.port) as sock:
        reader = Reader(sock)
        answers = []
        for _ in range(3):
            sock.sendall(GET_FAST)
            answers.append(reader.response())
        assert [a.headers.get("connection") for a in answers] == [None, None, "close"]
        assert answers[0].headers["keep-alive"] == "timeout=5, max=3"
        assert close_kind(sock) == "fin"


def test_keepalive_off_closes_after_each_response(make_server):
    server = make_server(keepalive=False)
    with connect(server.port) as sock:
        sock.sendall(GET_FAST)
        assert Reader(sock).response().headers["connection"] == "close"
        assert close_kind(sock) == "fin"


def test_idle_keepalive_connection_is_closed_after_the_timeout(make_server):
    server = make_server(keepalive_timeout_seconds=0.2)
    with connect(server.port) as sock:
        sock.sendall(GET_FAST)
        assert Reader(sock).response().headers["keep-alive"] == "timeout=0.2"
        started = time.monotonic()
        assert close_kind(sock, timeout=3) == "fin"
        assert 0.15 <= time.monotonic() - started < 2
    assert server.stats()["keepalive_timeouts"] == 1


def test_http10_client_gets_keepalive_only_when_it_asks(server):
    with connect(server.port) as sock:
        sock.sendall(b"GET /fast HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        answer = Reader(sock).response()
        assert answer.headers["connection"] == "keep-alive"
    with connect(server.port) as sock:
        sock.sendall(b"GET /fast HTTP/1.0\r\n\r\n")
        assert Reader(sock).response().headers["connection"] == "close"
        assert close_kind(sock) == "fin"


def test_buffer_sizes_are_read_back_from_the_socket(make_server):
    server = make_server(send_buffer_bytes=64 * 1024, recv_buffer_bytes=32 * 1024,
                         read_buffer_bytes=4096)
    options = exchange(server.port, get("/sockopts")).body
    import json
    reported = json.loads(options)
    # Linux doubles the value set, to leave room for its own bookkeeping (socket(7)).
    assert reported["send_buffer_bytes"] == 2 * 64 * 1024
    assert reported["recv_buffer_bytes"] == 2 * 32 * 1024
    assert reported["read_buffer_bytes"] == 4096


def test_default_buffers_are_left_to_the_kernel(server):
    import json
    reported = json.loads(exchange(server.port, get("/sockopts")).body)
    assert reported["nodelay"] is True
    assert reported["linger"] == {"enabled": False, "seconds": 0}
    assert reported["send_buffer_bytes"] > 0


def test_nodelay_and_linger_are_read_back(make_server):
    import json
    server = make_server(nodelay=False, linger_seconds=0)
    reported = json.loads(exchange(server.port, get("/sockopts")).body)
    assert reported["nodelay"] is False
    assert reported["linger"] == {"enabled": True, "seconds": 0}


def test_read_buffer_size_sets_how_much_each_recv_takes(make_server):
    body = b"x" * 64 * 1024
    request = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    reads = {}
    for size in (1024, 64 * 1024):
        server = make_server(read_buffer_bytes=size)
        answer = exchange(server.port, request)
        assert answer.body == body
        reads[size] = server.stats()["reads"]
    # 64 KiB through a 1 KiB buffer takes at least 64 reads; through 64 KiB, a handful.
    assert reads[1024] >= 64
    assert reads[64 * 1024] < 16


def test_processing_time_header(make_server):
    server = make_server(processing_time_header=True)
    answer = exchange(server.port, get("/fast"))
    assert answer.headers["x-processing-time"].endswith("us")
    assert int(answer.headers["x-processing-time"][:-2]) >= 0


def test_stall_injector_freezes_every_connection(make_server):
    server = make_server(stall_every_seconds=0.3, stall_ms=200)
    latencies = timed_requests(server.port, GET_FAST, 200)
    # Until a request is caught in a stall (about ten stalls in 3 s), not until one is counted:
    # a stall can fall while no request is in flight (during the stats() call itself).
    deadline = time.monotonic() + 3
    while max(latencies) < 100 and time.monotonic() < deadline:
        latencies += timed_requests(server.port, GET_FAST, 50)
    assert server.stats()["stalls"] >= 1
    # Some request was caught in a stall and waited for (most of) it.
    assert max(latencies) >= 100, max(latencies)


# A first request on a fresh connection, sent as two writes by a client with Nagle on: the body
# waits in the client until the server acknowledges the head, so the answer's latency is the
# server side's ACK delay. A new Linux connection acknowledges at once (quick-ACK mode); one
# put in delayed-ACK mode by TCP_QUICKACK=0 holds the ACK ~40 ms.
TWO_WRITE_HEAD = b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\n"
TWO_WRITE_BODY = b"hello"
PLAIN_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
FRESH_CONNECTIONS = 7


class PlainProtocol(asyncio.Protocol):
    """The stock baseline: asyncio's server touches no socket option but TCP_NODELAY."""

    accepted = 0  # connections past accept: asyncio has made its only socket write by then

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        PlainProtocol.accepted += 1
        self.transport = transport
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.received.endswith(TWO_WRITE_BODY):
            self.transport.write(PLAIN_ANSWER)  # type: ignore[attr-defined]
            self.received = b""


@pytest.fixture
def plain_asyncio_server() -> Iterator[tuple[int, Callable[[], int]]]:
    """(port, how many connections it has accepted) of a plain asyncio server in a thread."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(PlainProtocol, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1], lambda: PlainProtocol.accepted
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


def two_write_first_requests(port: int, accepted: Callable[[], int]) -> list[float]:
    """Milliseconds to the answer of each fresh connection's two-write first request."""
    latencies = []
    for _ in range(FRESH_CONNECTIONS):
        before = accepted()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # Nagle on
            # Wait until the server has accepted (and set whatever it sets): otherwise the head
            # can arrive before the server touches the socket, and the test would pass by race.
            deadline = time.monotonic() + 5
            while accepted() == before and time.monotonic() < deadline:
                time.sleep(0.001)
            started = time.perf_counter()
            sock.sendall(TWO_WRITE_HEAD)
            sock.sendall(TWO_WRITE_BODY)
            assert Reader(sock).response().body == TWO_WRITE_BODY
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


@pytest.mark.timing
def test_a_default_server_acknowledges_a_fresh_connection_like_a_plain_asyncio_server(
        make_server, plain_asyncio_server):
    server = make_server()
    plain_port, plain_accepted = plain_asyncio_server
    lab = two_write_first_requests(server.port, lambda: server.stats()["connections_total"])
    plain = two_write_first_requests(plain_port, plain_accepted)
    # Within a few ms of the plain server; a delayed ACK would add ~40 ms to each.
    assert statistics.median(lab) < statistics.median(plain) + 5, (lab, plain)


@pytest.mark.timing
def test_no_quickack_forces_delayed_ack_mode_from_the_first_request(make_server):
    server = make_server(quickack=False)
    lab = two_write_first_requests(server.port, lambda: server.stats()["connections_total"])
    assert statistics.median(lab) >= 30, lab


def first_two_quickack_readings(port: int) -> list[bool]:
    """TCP_QUICKACK as the server's socket reports it, at a fresh connection's first request
    and at its second (after the server has answered once)."""
    with connect(port) as sock:
        reader = Reader(sock)
        readings = []
        for _ in range(2):
            sock.sendall(get("/sockopts"))
            readings.append(json.loads(reader.response().body)["quickack"])
    return readings


@pytest.mark.parametrize(("quickack", "expected"), [
    (None, True),  # the kernel's own start: quick-ACK mode (what it does after an answer is its own)
    (True, [True, True]),  # re-armed after every read
    (False, [False, False]),  # delayed-ACK mode from the start
])
def test_each_quickack_state_reads_back_as_its_mode(make_server, quickack, expected):
    readings = first_two_quickack_readings(make_server(quickack=quickack).port)
    assert (readings[0] if quickack is None else readings) == expected

"""HTTP/1.1 behaviour: routes, keep-alive, pipelining in order, streaming, flow control."""

from __future__ import annotations

import json
import time

from rawhttp import GET_FAST, Reader, close_kind, connect, exchange, get, head_of

from lab.http.messages import Prebuilt, Response
from lab.http.routing import Router

ECHO_HELLO = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED_ECHO = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")


def test_demo_routes(server):
    assert exchange(server.port, GET_FAST).body == b"OK"
    assert exchange(server.port, get("/")).body == b"OK"
    assert exchange(server.port, ECHO_HELLO).body == b"hello"
    assert exchange(server.port, CHUNKED_ECHO).body == b"abcde"
    assert json.loads(exchange(server.port, get("/users/42")).body)["id"] == "42"
    assert len(exchange(server.port, get("/bytes/100000")).body) == 100000
    answer = exchange(server.port, get("/stream/3"))
    assert answer.headers["transfer-encoding"] == "chunked"
    assert answer.body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_delay_waits_without_blocking_other_requests(server):
    with connect(server.port) as slow, connect(server.port) as fast:
        started = time.perf_counter()
        slow.sendall(get("/delay/300"))
        fast.sendall(GET_FAST)
        assert Reader(fast).response().body == b"OK"
        assert time.perf_counter() - started < 0.25
        assert Reader(slow).response().status == 200
        assert time.perf_counter() - started >= 0.29


def test_delay_can_be_slow_for_a_share_of_requests(server):
    always = exchange(server.port, get("/delay/0?slow_percent=100&slow_ms=30"))
    assert always.body == b"waited 30 ms\n"
    never = exchange(server.port, get("/delay/1?slow_percent=0&slow_ms=30"))
    assert never.body == b"waited 1 ms\n"
    with connect(server.port) as sock:
        sock.sendall(get("/delay/0?slow_percent=50&slow_ms=1") * 200)
        reader = Reader(sock)
        slow = sum(reader.response().body == b"waited 1 ms\n" for _ in range(200))
    assert 50 <= slow <= 150  # binomial(200, 0.5): outside this is 1 in 10 million
    for bad in ("slow_percent=101&slow_ms=5", "slow_percent=x&slow_ms=5", "slow_ms=-1"):
        assert exchange(server.port, get(f"/delay/0?{bad}")).status == 400


def test_pipelined_requests_are_answered_in_order(server):
    with connect(server.port) as sock:
        sock.sendall(get("/delay/100") + GET_FAST + get("/users/7") + get("/stream/2") + GET_FAST)
        reader = Reader(sock)
        bodies = [reader.response().body for _ in range(5)]
    assert bodies[0] == b"waited 100 ms\n"
    assert bodies[1] == b"OK"
    assert json.loads(bodies[2])["id"] == "7"
    assert bodies[3] == b"chunk 0\nchunk 1\n"
    assert bodies[4] == b"OK"


def test_error_after_pipelined_slow_request_comes_after_its_answer(server):
    with connect(server.port) as sock:
        sock.sendall(get("/delay/100") + b"BAD REQUEST\r\n\r\n")
        reader = Reader(sock)
        assert reader.response().status == 200
        assert reader.response().status == 400
        assert close_kind(sock) == "fin"


def test_head_gets_headers_only(server):
    with connect(server.port) as sock:
        sock.sendall(b"HEAD /fast HTTP/1.1\r\nHost: t\r\n\r\n" + GET_FAST)
        head = head_of(sock)
        assert b"Content-Length: 2\r\n" in head
        assert Reader(sock).response().body == b"OK"  # nothing of a body came between


def test_request_split_across_many_writes(server):
    with connect(server.port) as sock:
        for byte in ECHO_HELLO:
            sock.sendall(bytes([byte]))
        assert Reader(sock).response().body == b"hello"


def test_slow_reader_is_held_back_by_flow_control(server):
    # Forty 4 MB answers requested at once and not read: the server must stop producing
    # when the socket is backed up instead of buffering 160 MB.
    count, size = 40, 4_000_000
    with connect(server.port, timeout=30) as sock:
        sock.sendall(get(f"/bytes/{size}") * count)
        time.sleep(0.5)
        assert server.stats()["bytes_sent"] < count * size / 2
        reader = Reader(sock)
        for _ in range(count):
            assert len(reader.response().body) == size


def test_identical_requests_are_each_parsed_answered_and_counted(make_server):
    server = make_server(keepalive_max_requests=4)
    with connect(server.port) as sock:
        reader = Reader(sock)
        answers = []
        for _ in range(4):
            sock.sendall(GET_FAST)
            answers.append(reader.response())
    assert [a.body for a in answers] == [b"OK"] * 4
    assert answers[-1].headers["connection"] == "close"
    assert server.stats()["requests"] == 4


def test_custom_router_with_middleware(make_server):
    router = Router()
    seen = []
    router.request_middleware.append(lambda request: seen.append(request.path))

    def tag(request, response):
        response.headers.append(("X-Tag", "yes"))
    router.response_middleware.append(tag)
    router.add("GET", "/hello/{name}", lambda r: Response.text(f"hi {r.params['name']}"))
    router.add("GET", "/const", lambda r: Prebuilt(b"const"))
    router.request_middleware.append(
        lambda r: Response.text("blocked", 403) if r.header("x-block") else None)
    server = make_server(router=router)
    answer = exchange(server.port, get("/hello/ann"))
    assert (answer.body, answer.headers["x-tag"]) == (b"hi ann", "yes")
    assert exchange(server.port, get("/hello/ann", "X-Block: 1")).status == 403
    assert seen == ["/hello/ann", "/hello/ann"]


def test_handler_exception_gives_500_and_the_server_lives(make_server):
    router = Router()

    def broken(request):
        raise RuntimeError("boom")
    router.add("GET", "/broken", broken)
    router.add("GET", "/ok", lambda r: Response.text("ok"))
    server = make_server(router=router)
    assert exchange(server.port, get("/broken")).status == 500
    assert exchange(server.port, get("/ok")).body == b"ok"
    assert server.stats()["errors"]["handler_error"] == 1


def test_asyncio_loop_serves_the_same(make_server):
    server = make_server(loop="asyncio", nodelay=False, split_writes=True)
    assert exchange(server.port, GET_FAST).body == b"OK"
    assert exchange(server.port, get("/stream/2")).body == b"chunk 0\nchunk 1\n"


def test_work_holds_the_loop_for_its_service_time(server):
    with connect(server.port) as busy, connect(server.port) as fast:
        started = time.perf_counter()
        busy.sendall(get("/work/200000"))
        time.sleep(0.05)  # the busy loop has begun
        fast.sendall(GET_FAST)
        assert Reader(fast).response().body == b"OK"
        # /fast had to wait for the CPU-bound handler: it blocks everyone, unlike /delay.
        assert time.perf_counter() - started >= 0.19
        assert Reader(busy).response().body == b"worked 200000 us\n"


def test_work_varies_its_time_on_request_and_refuses_bad_input(server):
    times = {exchange(server.port, get("/work/500?dist=exp")).body for _ in range(20)}
    assert len(times) > 1
    assert exchange(server.port, get("/work/500?dist=normal")).status == 400
    assert exchange(server.port, get("/work/9999999")).status == 400


def test_a_route_written_with_the_front_door_alone(make_server):
    """What a user needs to write a route is exported by ``import lab``."""
    import lab

    router = lab.Router()

    @router.route("/hello/{name}")
    def hello(request: lab.Request) -> lab.Response:
        return lab.Response.text(f"hello {request.params['name']}")

    server = make_server(router=router)
    assert exchange(server.port, get("/hello/lab")).body == b"hello lab"

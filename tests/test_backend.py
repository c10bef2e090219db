"""GET /backend: K workers behind a queue, and the knobs that shed, drop and reorder its work."""

from __future__ import annotations

import socket
import struct
import threading
import time

from rawhttp import Reader, connect, exchange, get

BACKEND = get("/backend")


def backend_counts(server) -> dict[str, int]:
    stats = server.stats()
    return {name: stats[f"backend_{name}"] for name in ("served", "shed", "dropped")}


def answers_at_once(port: int, count: int) -> list[tuple[int, str | None, float]]:
    """``count`` requests to /backend sent together on connections of their own: each one's
    (status, Retry-After, seconds until its answer), in the order they were sent."""
    sockets = [connect(port) for _ in range(count)]
    results: list[tuple[int, str | None, float]] = [(0, None, 0.0)] * count
    began = time.perf_counter()

    def ask(index: int) -> None:
        answer = Reader(sockets[index]).response()
        results[index] = (answer.status, answer.headers.get("retry-after"), time.perf_counter() - began)

    for sock in sockets:
        sock.sendall(BACKEND)
        time.sleep(0.02)  # in this order into the queue
    threads = [threading.Thread(target=ask, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for sock in sockets:
        sock.close()
    return results


def test_a_served_request_is_counted(make_server):
    server = make_server(backend_service_ms=1)
    answer = exchange(server.port, BACKEND)
    assert answer.status == 200 and answer.body == b"served\n"
    assert backend_counts(server) == {"served": 1, "shed": 0, "dropped": 0}


def test_shedding_answers_503_with_retry_after_and_is_live(make_server):
    server = make_server(backend_shed_percent=100, backend_retry_after_seconds=3)
    answer = exchange(server.port, BACKEND)
    assert answer.status == 503 and answer.headers["retry-after"] == "3"
    server.reconfigure(backend_shed_percent=0)
    assert exchange(server.port, BACKEND).status == 200
    assert backend_counts(server) == {"served": 1, "shed": 1, "dropped": 0}


def test_a_full_queue_sheds_at_once(make_server):
    server = make_server(backend_workers=1, backend_service_ms=300, backend_queue_limit=1)
    results = answers_at_once(server.port, 3)
    # one served, one waits its turn, the third finds the queue full and is shed at once
    assert [status for status, _, _ in results] == [200, 200, 503]
    assert results[2][1] == "1" and results[2][2] < 0.25
    assert backend_counts(server) == {"served": 2, "shed": 1, "dropped": 0}


def test_queued_work_past_the_server_deadline_is_dropped_not_done(make_server):
    server = make_server(backend_workers=1, backend_service_ms=400, backend_deadline_ms=100)
    results = answers_at_once(server.port, 2)
    assert [status for status, _, _ in results] == [200, 503]
    # dropped at its deadline, while the first request still held the only worker
    assert results[1][2] < 0.35
    assert backend_counts(server) == {"served": 1, "shed": 0, "dropped": 1}


def test_lifo_serves_the_newest_waiting_request_first(make_server):
    server = make_server(backend_workers=1, backend_service_ms=150, backend_queue="lifo")
    results = answers_at_once(server.port, 3)
    done = [seconds for _, _, seconds in results]
    assert [status for status, _, _ in results] == [200, 200, 200]
    assert done[0] < done[2] < done[1]  # the last to arrive is served before the one before it


def test_a_caller_that_leaves_does_not_take_its_job_out_of_the_queue(make_server):
    # As a query handed to a database: the work is done whoever still waits for it, which
    # is what a client's timeouts cost an overloaded server (and what the deadline cures).
    server = make_server(backend_workers=1, backend_service_ms=100)
    first, second = connect(server.port), connect(server.port)
    first.sendall(BACKEND)
    time.sleep(0.02)
    second.sendall(BACKEND)
    time.sleep(0.02)
    # a reset, as the generator's timeout leaves it: the server hears of it at once
    second.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    second.close()
    first.recv(65536)
    first.close()
    deadline = time.monotonic() + 3
    while backend_counts(server)["served"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend_counts(server)["served"] == 2

"""WebSocket routes on the lab server: echo, stream, knobs, and bad input answered by close code.

Bad input is sent as raw frames over a raw socket (the client libraries refuse to send it);
after each case ``/fast`` and another WebSocket must still work.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

import pytest
from rawhttp import GET_FAST, Reader, connect, exchange, get
from websockets.sync.client import connect as ws_connect

HANDSHAKE = (b"GET %s HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_CONT = 1, 2, 8, 9, 10, 0


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
          mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A client frame as RFC 6455 section 5.2 lays it out (masking optional, to break it)."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    first, second = _exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", _exactly(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", _exactly(sock, 8))[0]
    return first & 0x0F, _exactly(sock, length)


def _exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def open_raw(port: int, path: str = "/ws/echo") -> socket.socket:
    sock = connect(port)
    sock.sendall(HANDSHAKE % path.encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def close_code_after(port: int, data: bytes) -> int:
    """Send ``data`` on a fresh WebSocket; the code of the close frame the server answers."""
    with open_raw(port) as sock:
        sock.sendall(data)
        while True:
            opcode, payload = read_frame(sock)
            if opcode == OP_CLOSE:
                return int(struct.unpack("!H", payload[:2])[0])


def assert_still_serving(port: int) -> None:
    assert exchange(port, GET_FAST).body == b"OK"
    with ws_connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


def test_echo_returns_text_as_text_and_binary_as_binary(server):
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(b"\x00\xff" * 40_000)  # 80 KB: more than one read, extended length
        assert ws.recv(timeout=5) == b"\x00\xff" * 40_000
    assert server.stats()["requests"] == 2


def test_fragmented_message_comes_back_whole(server):
    with open_raw(server.port) as sock:
        sock.sendall(frame(OP_TEXT, b"ab", fin=False) + frame(OP_PING, b"p")
                     + frame(OP_CONT, b"cd"))
        assert read_frame(sock) == (OP_PONG, b"p")  # a control frame may come between fragments
        assert read_frame(sock) == (OP_TEXT, b"abcd")


def test_frames_sent_with_the_upgrade_request_are_not_lost(server):
    with connect(server.port) as sock:
        sock.sendall(HANDSHAKE % b"/ws/echo" + frame(OP_BINARY, b"early"))
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(1)
        assert read_frame(sock) == (OP_BINARY, b"early")


def test_close_handshake_echoes_the_code_and_the_server_closes_tcp(server):
    with open_raw(server.port) as sock:
        sock.sendall(frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
        assert read_frame(sock) == (OP_CLOSE, struct.pack("!H", 1000) + b"bye")
        sock.settimeout(5)
        assert sock.recv(10) == b""  # RFC 6455 section 7.1.1: the server closes TCP first
    deadline = time.monotonic() + 5
    while server.stats()["connections_open"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stats()["connections_open"] == 0


def test_stream_pushes_n_messages_then_closes_normally(server):
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws/stream/5") as ws:
        assert list(ws) == [f"message {i}" for i in range(5)]
        assert ws.close_code == 1000


def test_stream_with_a_bad_count_is_refused_before_the_upgrade(server):
    with connect(server.port) as sock:
        sock.sendall(HANDSHAKE % b"/ws/stream/many")
        assert Reader(sock).response().status == 400
    assert_still_serving(server.port)


def test_plain_request_to_a_websocket_route_gets_426(server):
    answer = exchange(server.port, get("/ws/echo"))
    assert answer.status == 426
    assert answer.headers["upgrade"] == "websocket"
    assert_still_serving(server.port)


def test_unmasked_client_frame_is_closed_1002(server):
    assert close_code_after(server.port, frame(OP_TEXT, b"hi", masked=False)) == 1002
    assert server.stats()["errors"]["ws_close_1002"] == 1
    assert_still_serving(server.port)


def test_reserved_opcode_is_closed_1002(server):
    assert close_code_after(server.port, frame(3, b"hi")) == 1002
    assert_still_serving(server.port)


def test_continuation_without_a_start_is_closed_1002(server):
    assert close_code_after(server.port, frame(OP_CONT, b"hi")) == 1002
    assert_still_serving(server.port)


def test_message_over_the_limit_is_closed_1009(make_server):
    server = make_server(ws_max_message_bytes=1000)
    assert close_code_after(server.port, frame(OP_BINARY, b"x" * 1001)) == 1009
    assert server.stats()["errors"]["ws_close_1009"] == 1
    assert_still_serving(server.port)


def test_fragments_over_the_limit_together_are_closed_1009(make_server):
    server = make_server(ws_max_message_bytes=1000)
    fragments = frame(OP_BINARY, b"x" * 600, fin=False) + frame(OP_CONT, b"x" * 600)
    assert close_code_after(server.port, fragments) == 1009
    assert_still_serving(server.port)


def test_bad_handshake_key_gets_400_and_the_server_goes_on(server):
    bad = (HANDSHAKE % b"/ws/echo").replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short")
    with connect(server.port) as sock:
        sock.sendall(bad)
        assert Reader(sock).response().status == 400
    assert_still_serving(server.port)


def test_idle_connection_is_closed_1001(make_server):
    server = make_server(ws_idle_timeout_seconds=0.2)
    with open_raw(server.port) as sock:
        sock.settimeout(5)
        opcode, payload = read_frame(sock)
        assert (opcode, struct.unpack("!H", payload[:2])[0]) == (OP_CLOSE, 1001)


def test_a_client_that_never_answers_the_close_is_cut_off(make_server):
    server = make_server(ws_idle_timeout_seconds=0.2)
    with open_raw(server.port) as sock:
        sock.settimeout(10)
        assert read_frame(sock)[0] == OP_CLOSE
        began = time.monotonic()
        with pytest.raises((ConnectionError, OSError)):
            read_frame(sock)  # no close frame from us: the server gives up on its own
        assert time.monotonic() - began < 5
    assert_still_serving(server.port)


def test_compression_is_negotiated_only_when_on(make_server):
    plain, deflating = make_server(), make_server(ws_compression=True)
    for server, expected in ((plain, None), (deflating, "permessage-deflate")):
        with ws_connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (extensions and extensions.split(";")[0]) == expected
            ws.send("a" * 5000)
            assert ws.recv(timeout=5) == "a" * 5000
    # 5000 repeated letters deflate to a few bytes: far fewer bytes went out compressed.
    assert deflating.stats()["bytes_sent"] < plain.stats()["bytes_sent"] - 4000


def test_small_buffer_still_parses_large_frames(make_server):
    server = make_server(ws_buffer_size=256)
    payload = os.urandom(10_000)
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
        ws.send(payload)
        assert ws.recv(timeout=5) == payload
    assert server.stats()["reads"] > 10_000 // 256


def _echo_round_trip_ms(port: int, rounds: int) -> float:
    """Median round trip of a small text message on one raw WebSocket."""
    times = []
    with open_raw(port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(rounds):
            started = time.perf_counter()
            sock.sendall(frame(OP_TEXT, base64.b64encode(os.urandom(12))))
            read_frame(sock)
            times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[len(times) // 2]


@pytest.mark.timing
def test_split_frame_writes_with_nagle_stall_on_delayed_acks(make_server):
    # A new connection starts in quick-ACK mode: the median over 30 rounds shows the stall.
    stalled = make_server(nodelay=False, split_writes=True)
    assert _echo_round_trip_ms(stalled.port, 30) >= 30
    prompt = make_server(nodelay=True, split_writes=True)
    assert _echo_round_trip_ms(prompt.port, 30) < 5


# --- the fast path for small frames: every case it does not take still goes to the library ---


def test_small_text_that_is_not_utf8_is_closed_1007(server):
    assert close_code_after(server.port, frame(OP_TEXT, b"\xff\xfe")) == 1007
    assert_still_serving(server.port)


def test_small_message_over_a_small_limit_is_closed_1009(make_server):
    server = make_server(ws_max_message_bytes=10)
    assert close_code_after(server.port, frame(OP_TEXT, b"x" * 11)) == 1009
    assert_still_serving(server.port)


def test_payload_that_looks_like_a_small_frame_stays_payload(server):
    # The end of a large frame arrives in a read of its own, and those bytes happen to read
    # as one whole small masked frame: only the large message may come back.
    tail = bytes((0x82, 0x80 | 20)) + b"\x00\x00\x00\x00" + b"y" * 20
    payload = b"z" * 974 + tail
    whole = frame(OP_BINARY, payload, mask=b"\x00\x00\x00\x00")
    with open_raw(server.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(whole[:-len(tail)])
        time.sleep(0.1)  # a read of its own for the tail
        sock.sendall(tail)
        assert read_frame(sock) == (OP_BINARY, payload)
        sock.sendall(frame(OP_TEXT, b"next"))
        assert read_frame(sock) == (OP_TEXT, b"next")


def test_a_small_frame_split_across_reads_is_read_whole(server):
    data = frame(OP_TEXT, b"split in two")
    with open_raw(server.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(data[:5])
        time.sleep(0.1)
        sock.sendall(data[5:])
        assert read_frame(sock) == (OP_TEXT, b"split in two")


def test_a_client_that_does_not_read_its_echoes_is_not_buffered_without_bound(server):
    # 64 MB of messages, none of the echoes read: the server must stop reading once its
    # write buffer is full, so the sender blocks long before all of it is accepted.
    burst = frame(OP_BINARY, b"m" * 1000) * 1000
    with open_raw(server.port) as sock:
        sock.settimeout(2)
        with pytest.raises(TimeoutError):
            for _ in range(64):
                sock.sendall(burst)
        assert server.stats()["bytes_received"] < 32_000_000
    assert_still_serving(server.port)


# --- issue 23: what a hostile client got through ---------------------------------------------


def close_of(sock: socket.socket) -> tuple[int, bytes]:
    """Skip to the server's close frame: (its code, its reason)."""
    while True:
        opcode, payload = read_frame(sock)
        if opcode == OP_CLOSE:
            return int(struct.unpack("!H", payload[:2])[0]), payload[2:]


@pytest.mark.parametrize("sent, answers", [
    (frame(OP_TEXT, b"last words") + frame(OP_CLOSE, struct.pack("!H", 1000)),
     [(OP_TEXT, b"last words")]),
    (frame(OP_TEXT, b"ab", fin=False) + frame(OP_PING, b"p") + frame(OP_CONT, b"cd")
     + frame(OP_CLOSE, struct.pack("!H", 1000)),
     [(OP_PONG, b"p"), (OP_TEXT, b"abcd")]),
    (frame(OP_TEXT, b"one") + frame(OP_PING, b"p") + frame(OP_TEXT, b"two")
     + frame(OP_CLOSE, struct.pack("!H", 1000)),
     [(OP_TEXT, b"one"), (OP_PONG, b"p"), (OP_TEXT, b"two")]),
], ids=["text-close", "fragment-ping-fragment-close", "text-ping-text-close"])
def test_what_came_before_a_close_in_the_same_write_is_answered_first(server, sent, answers):
    with open_raw(server.port) as sock:
        sock.settimeout(5)
        sock.sendall(sent)
        assert [read_frame(sock) for _ in answers] == answers
        assert read_frame(sock) == (OP_CLOSE, struct.pack("!H", 1000))
    assert server.stats()["requests"] == sum(1 for opcode, _ in answers if opcode != OP_PONG)


def test_a_handshake_in_an_http10_request_is_refused_400(server):
    with connect(server.port) as sock:
        sock.sendall((HANDSHAKE % b"/ws/echo").replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n"))
        answer = Reader(sock).response()
        assert answer.status == 400
        assert b"HTTP/1.1" in answer.body
    assert server.stats()["errors"]["ws_bad_handshake"] == 1
    assert_still_serving(server.port)


def test_a_64_bit_length_with_its_top_bit_set_is_closed_1002(server):
    # RFC 6455 section 5.2: "the most significant bit MUST be 0" -- bad framing, not a big message.
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, (1 << 63) + 5) + b"\x01\x02\x03\x04"
    assert close_code_after(server.port, header + b"hello") == 1002
    assert server.stats()["errors"]["ws_close_1002"] == 1
    assert_still_serving(server.port)


def test_a_message_in_more_fragments_than_allowed_is_closed_1008(make_server):
    server = make_server(ws_max_fragments=3)
    with open_raw(server.port) as sock:  # three frames: allowed
        sock.settimeout(5)
        sock.sendall(frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"b", fin=False)
                     + frame(OP_CONT, b"c"))
        assert read_frame(sock) == (OP_TEXT, b"abc")
    fragments = frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"", fin=False) * 3
    with open_raw(server.port) as sock:
        sock.settimeout(5)
        sock.sendall(fragments + frame(OP_CONT, b"z"))
        code, reason = close_of(sock)
        assert code == 1008 and b"ws_max_fragments" in reason
    assert server.stats()["errors"]["ws_close_1008"] == 1
    assert_still_serving(server.port)


def test_the_default_fragment_limit_ends_a_flood_of_empty_fragments(server):
    with open_raw(server.port) as sock:
        sock.settimeout(5)
        sock.sendall(frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"", fin=False) * 5000)
        assert close_of(sock)[0] == 1008
    assert_still_serving(server.port)


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickled"])
def test_a_message_that_takes_too_long_is_closed_1008(make_server, trickle):
    # Silent: the message's deadline ends it, sooner than the idle timeout would. Trickled:
    # an empty fragment every 50 ms is traffic, so only the message's own deadline ends it.
    server = make_server(ws_message_timeout_seconds=0.3, ws_idle_timeout_seconds=30)
    with open_raw(server.port) as sock:
        sock.settimeout(5)
        began = time.monotonic()
        sock.sendall(frame(OP_TEXT, b"a", fin=False))
        if trickle:
            sock.settimeout(0.05)
            while True:
                try:
                    sock.sendall(frame(OP_CONT, b"", fin=False))
                    code, reason = close_of(sock)
                    break
                except TimeoutError:
                    assert time.monotonic() - began < 5
            sock.settimeout(5)
        else:
            code, reason = close_of(sock)
        assert code == 1008 and b"ws_message_timeout_seconds" in reason
        assert time.monotonic() - began < 5
    assert_still_serving(server.port)


def test_more_frames_than_one_turn_and_then_the_end_are_all_answered(server):
    # A read of many small frames is handed on a turn at a time; a client that half-closes
    # behind them still gets every echo before the connection ends.
    messages = [b"message %d" % i for i in range(1000)]
    with open_raw(server.port) as sock:
        sock.settimeout(5)
        sock.sendall(b"".join(frame(OP_BINARY, m) for m in messages))
        sock.shutdown(socket.SHUT_WR)
        assert [read_frame(sock) for _ in messages] == [(OP_BINARY, m) for m in messages]


@pytest.mark.timing
def test_a_flood_of_tiny_frames_does_not_stall_another_connection(lab_server):
    # 200,000 empty continuation frames (1.2 MB) in reads of up to 1 MiB: handed to the
    # library whole, one read held the loop ~1.5 s (each frame is parsed in Python); a turn
    # at a time, another connection's round trip stayed 11-76 ms with the machine loaded
    # (load average 7 on 2 cores). The limit on fragments is
    # lifted so that the whole flood is parsed.
    import threading

    server = lab_server(ws_buffer_size=1024 * 1024, ws_max_fragments=1_000_000)
    flood = frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"", fin=False) * 200_000
    worst = 0.0
    with open_raw(server.port) as polite, open_raw(server.port) as hostile:
        polite.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        polite.settimeout(10)
        hostile.settimeout(30)
        sender = threading.Thread(target=hostile.sendall, args=(flood + frame(OP_CONT, b"z"),))
        sender.start()
        echoed: list[tuple[int, bytes]] = []
        reader = threading.Thread(target=lambda: echoed.append(read_frame(hostile)))
        reader.start()
        began = time.monotonic()
        while reader.is_alive() and time.monotonic() - began < 30:
            started = time.perf_counter()
            polite.sendall(frame(OP_TEXT, b"ping"))
            assert read_frame(polite) == (OP_TEXT, b"ping")
            worst = max(worst, time.perf_counter() - started)
        sender.join()
        reader.join()
        assert echoed == [(OP_TEXT, b"az")]  # every fragment was parsed, in order
    assert worst < 0.5, f"another connection waited {worst * 1000:.0f} ms"

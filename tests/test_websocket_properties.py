"""The WebSocket connection without sockets: every message echoed once, however the bytes split.

The server answers a read that is exactly one small frame itself and hands everything else
to the library, so it must know where the library's frames end: a cut that leaves the tail
of a large frame looking like a small frame must not be taken for one. Frames of random
kinds and sizes, fragmented or not, are cut at random points and fed read by read: each
message must come back once, in order, and each ping get its pong. (A pong may overtake the
echo of an earlier message in the same read: the library answers a ping as it parses it, and
RFC 6455 section 5.4 lets control frames go between others.)
"""

from __future__ import annotations

import asyncio
import socket

from fakes import TransportWithSocket, UpgradableTransport, feed
from hypothesis import given, settings
from hypothesis import strategies as st
from test_websocket_server import HANDSHAKE, OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, frame
from websockets.frames import Frame, Opcode

from lab.http.config import ServerConfig
from lab.http.connection import HttpConnection
from lab.http.demo_routes import demo_router
from lab.http.state import ServerState


def echoes(loop: asyncio.AbstractEventLoop, reads: list[bytes]) -> bytes:
    """What the server writes after its 101 for these reads of one upgraded connection."""
    state = ServerState(ServerConfig(), demo_router(), loop)
    connection = HttpConnection(state)
    transport = UpgradableTransport()
    connection.connection_made(transport)
    feed(connection, HANDSHAKE % b"/ws/echo")
    head_end = transport.written.index(b"\r\n\r\n") + 4
    assert transport.written.startswith(b"HTTP/1.1 101 ")
    for data in reads:
        feed(transport.protocol, data)
    return bytes(transport.written[head_end:])


# A message: (text, payload, fragmented); sizes around the fast path's limit and the 16-bit length.
messages = st.lists(st.tuples(st.booleans(),
                              st.binary(min_size=0, max_size=300).map(lambda b: b.hex()[:len(b)].encode()),
                              st.booleans()),
                    min_size=1, max_size=6)


def split_answer(answer: bytes) -> tuple[list[bytes], list[bytes]]:
    """The server's frames as they came: (data frames, pongs), each list in order."""
    data, pongs = [], []
    position = 0
    while position < len(answer):
        length, header = answer[position + 1] & 0x7F, 2
        if length == 126:
            length, header = int.from_bytes(answer[position + 2:position + 4], "big"), 4
        end = position + header + length
        (pongs if answer[position] & 0x0F == OP_PONG else data).append(answer[position:end])
        position = end
    return data, pongs


Expected = tuple[list[bytes], list[bytes]]  # (echoes, pongs)


def client_bytes(message_list: list[tuple[bool, bytes, bool]]) -> tuple[bytes, Expected]:
    """The client's frames, and the server's expected answer: (echoes, pongs)."""
    sent = b""
    echoes_expected: list[bytes] = []
    pongs: list[bytes] = []
    for index, (text, payload, fragmented) in enumerate(message_list):
        opcode = OP_TEXT if text else OP_BINARY
        if fragmented and len(payload) > 1:
            half = len(payload) // 2
            sent += (frame(opcode, payload[:half], fin=False) + frame(OP_PING, b"%d" % index)
                     + frame(OP_CONT, payload[half:]))
            pongs.append(Frame(Opcode.PONG, b"%d" % index).serialize(mask=False, extensions=[]))
        else:
            sent += frame(opcode, payload)
        echoes_expected.append(Frame(Opcode.TEXT if text else Opcode.BINARY, payload).serialize(
            mask=False, extensions=[]))
    return sent, (echoes_expected, pongs)


@settings(max_examples=150, deadline=None)
@given(message_list=messages, cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=8))
def test_every_message_is_echoed_once_however_the_reads_are_cut(loop, message_list, cuts):
    sent, expected = client_bytes(message_list)
    points = sorted({cut % len(sent) for cut in cuts} - {0})
    reads = [sent[start:end] for start, end in zip([0, *points], [*points, len(sent)], strict=True)]
    assert split_answer(echoes(loop, [sent])) == expected
    assert split_answer(echoes(loop, reads)) == expected


def test_a_large_frames_tail_that_looks_like_a_small_frame_is_payload(loop):
    tail = bytes((0x82, 0x80 | 20)) + b"\x00\x00\x00\x00" + b"y" * 20
    payload = b"z" * 974 + tail
    whole = frame(OP_BINARY, payload, mask=b"\x00\x00\x00\x00")
    expected = Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    assert echoes(loop, [whole[:-len(tail)], tail]) == expected


def test_quickack_is_set_again_after_every_read_of_a_websocket(loop) -> None:
    # Linux clears TCP_QUICKACK after its first acknowledgement; an upgraded connection must
    # re-arm it per read as the HTTP connection does, or the knob lasts one ACK.
    state = ServerState(ServerConfig(quickack=True), demo_router(), loop)
    connection = HttpConnection(state)
    transport = TransportWithSocket()
    connection.connection_made(transport)
    feed(connection, HANDSHAKE % b"/ws/echo")
    quickacks = [o for o in transport.socket.options if o[:2] == (socket.IPPROTO_TCP, socket.TCP_QUICKACK)]
    before = len(quickacks)
    for _ in range(3):
        feed(transport.protocol, frame(OP_TEXT, b"hi"))
    quickacks = [o for o in transport.socket.options if o[:2] == (socket.IPPROTO_TCP, socket.TCP_QUICKACK)]
    assert quickacks[before:] == [(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)] * 3



def echoes_over_turns(loop: asyncio.AbstractEventLoop, reads: list[bytes]) -> tuple[bytes, int]:
    """Like echoes, with the loop run while the server has paused reading for its backlog:
    what it writes after its 101, and how many turns of the loop that took."""
    state = ServerState(ServerConfig(), demo_router(), loop)
    connection = HttpConnection(state)
    transport = UpgradableTransport()
    connection.connection_made(transport)
    feed(connection, HANDSHAKE % b"/ws/echo")
    head_end = transport.written.index(b"\r\n\r\n") + 4
    websocket, turns = transport.protocol, 0
    for data in [*reads, b""]:
        while not transport.reading:
            loop.run_until_complete(asyncio.sleep(0))
            turns += 1
            assert turns < 1000, "the server never read again: its backlog did not drain"
        if data:
            feed(websocket, data)
    return bytes(transport.written[head_end:]), turns


@settings(max_examples=15, deadline=None)
@given(message_list=st.lists(st.tuples(st.booleans(),
                                       st.binary(max_size=200).map(lambda b: b.hex()[:len(b)].encode()),
                                       st.booleans()), min_size=130, max_size=200),
       cuts=st.lists(st.integers(min_value=1, max_value=60_000), max_size=6))
def test_reads_of_more_frames_than_one_turn_are_answered_whole_and_in_order(loop, message_list, cuts):
    # More frames than FRAMES_PER_TURN in a read: the rest waits for the loop's next turns,
    # however the reads are cut, and comes back once, in order, with every pong.
    sent, expected = client_bytes(message_list)
    answer, turns = echoes_over_turns(loop, [sent])
    assert turns >= 1 and split_answer(answer) == expected
    points = sorted({cut % len(sent) for cut in cuts} - {0})
    reads = [sent[start:end] for start, end in zip([0, *points], [*points, len(sent)], strict=True)]
    assert split_answer(echoes_over_turns(loop, reads)[0]) == expected

"""The HTTP/1.1 request reader on its own: bytes in, requests or a rejection out.

No event loop, no socket, no transport: a ``RequestReader`` is fed bytes and a listener
records what it reports (h11's way of testing a protocol). The same bytes give the same
requests however they are split, and with the compiled head scanner or without it.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Sequence
from typing import Any

import pytest
from fakes import (
    BAD_CODING,
    ECHO,
    ECHO_CHUNKED,
    FAST,
    FINAL,
    GARBAGE,
    HTTP10,
    NO_HOST,
    UPGRADE,
    USER,
    WELL_FORMED,
    heads,
    split_at,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import lab.http.reader as reader_module
from lab.http.reader import TRANSITIONS, Phase, Rejection, RequestReader, scan_head

HEADER_LIMIT = 16 * 1024
BODY_LIMIT = 1024
TWO_HOSTS = b"GET /fast HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
BAD_HOST = b"GET /fast HTTP/1.1\r\nHost: a b\r\n\r\n"
HTTP2 = b"GET /fast HTTP/2.0\r\nHost: t\r\n\r\n"
UNKNOWN_METHOD = b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n"
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
CLOSE = b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
EXPECT = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
          b"hello")
ABSOLUTE = b"GET http://t/users/7?a=1 HTTP/1.1\r\nHost: t\r\n\r\n"
WEBSOCKET = (b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class Recorder:
    """A listener that keeps what the reader reports; a request that does not keep the
    connection alive ends it, as the server's answer would."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_request(self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]],
                   body: bytes, http_version: str, keep_alive: bool) -> bool:
        self.events.append(("request", method, path, query, headers, body, http_version, keep_alive))
        return not keep_alive

    def on_rejection(self, rejection: Rejection) -> None:
        self.events.append(("rejection", *rejection))

    def on_continue_expected(self) -> None:
        self.events.append(("continue",))

    def on_upgrade(self, rest: bytes) -> None:
        self.events.append(("upgrade", rest))


class Failing(Recorder):
    def on_request(self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]],
                   body: bytes, http_version: str, keep_alive: bool) -> bool:
        raise RuntimeError("a broken listener")


class WatchedReader(RequestReader):
    """A reader that checks each change of its phase against the transition table."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "phase" and hasattr(self, "phase") and value is not self.phase:
            assert value in TRANSITIONS[self.phase], f"{self.phase} -> {value}"
            self.__dict__.setdefault("changes", []).append((self.phase, value))
        super().__setattr__(name, value)


def read(reads: Sequence[bytes], *, scan: Any = scan_head, header_limit: int = HEADER_LIMIT,
         body_limit: int = BODY_LIMIT) -> tuple[list[tuple[Any, ...]], Phase]:
    """What a reader reports for these reads (with what each read left it waiting for, when
    its timeout starts), and the phase it ends in."""
    recorder = Recorder()
    reader = WatchedReader(recorder, max_header_bytes=header_limit, max_body_bytes=body_limit, scan=scan)
    for data in reads:
        waiting = reader.feed(bytearray(data), len(data))  # a read buffer, as the connection's
        if waiting is not None:
            recorder.events.append(("waiting", waiting))
    return recorder.events, reader.phase


def outcome(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The requests and rejections, without the waiting a split adds, and without which
    bytes followed an upgrade in its read (they depend on the split)."""
    return [event[:1] if event[0] == "upgrade" else event for event in events if event[0] != "waiting"]


def requests(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [event for event in events if event[0] == "request"]


@pytest.mark.parametrize("scan", [scan_head, None], ids=["scanned", "llhttp"])
def test_a_plain_request_is_read_in_one_call(scan: Any) -> None:
    events, phase = read([USER], scan=scan)
    assert requests(events) == [("request", "GET", "/users/42", "x=1", [(b"Host", b"t"), (b"X-Id", b"7")],
                                 b"", "1.1", True)]
    assert phase is Phase.IDLE


@pytest.mark.parametrize("scan", [scan_head, None], ids=["scanned", "llhttp"])
def test_a_head_cut_in_two_is_waited_for(scan: Any) -> None:
    events, phase = read([FAST[:10]], scan=scan)
    assert (events, phase) == ([("waiting", Phase.HEAD)], Phase.HEAD)
    events, phase = read([FAST[:10], FAST[10:20], FAST[20:]], scan=scan)
    # The head's timeout started with its first byte: the second part does not restart it.
    assert events == [("waiting", Phase.HEAD),
                      ("request", "GET", "/fast", "", [(b"Host", b"t")], b"", "1.1", True)]
    assert phase is Phase.IDLE


@pytest.mark.parametrize("data", [ECHO, ECHO_CHUNKED], ids=["content-length", "chunked"])
def test_a_body_is_read_whole(data: bytes) -> None:
    events, phase = read([data])
    assert requests(events)[0][1:3] == ("POST", "/echo")
    assert requests(events)[0][5] == b"hello world"
    assert phase is Phase.IDLE


def test_a_body_that_moves_on_restarts_its_timeout_each_read() -> None:
    events, _ = read([ECHO[:-6], ECHO[-6:-3], ECHO[-3:]])
    assert [event[0] for event in events] == ["waiting", "waiting", "request"]
    assert events[0] == events[1] == ("waiting", Phase.BODY)
    assert requests(events)[0][5] == b"hello world"


def test_an_absolute_form_target_is_read_as_its_path() -> None:
    assert requests(read([ABSOLUTE])[0])[0][2:4] == ("/users/7", "a=1")


def test_http_10_keeps_no_connection_alive_unasked() -> None:
    events, phase = read([HTTP10 + FAST])
    assert requests(events) == [("request", "GET", "/fast", "", [], b"", "1.0", False)]
    assert phase is Phase.CLOSED  # the listener said so: the /fast behind it is not read


@pytest.mark.parametrize("scan", [scan_head, None], ids=["scanned", "llhttp"])
def test_nothing_is_read_after_the_listener_says_close(scan: Any) -> None:
    events, phase = read([FAST + CLOSE + FAST + ECHO], scan=scan)
    assert [event[2] for event in requests(events)] == ["/fast", "/fast"]
    assert phase is Phase.CLOSED


@pytest.mark.parametrize(("data", "status", "kind"), [
    (NO_HOST, 400, "bad_request"),
    (TWO_HOSTS, 400, "bad_request"),
    (BAD_HOST, 400, "bad_request"),
    (GARBAGE, 400, "bad_request"),
    (TLS_HELLO, 400, "bad_request"),
    (HTTP2, 505, "bad_request"),
    (BAD_CODING, 501, "bad_request"),
    (UNKNOWN_METHOD, 501, "not_implemented"),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n", 413, "body_too_large"),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n" + b"a" * 1025,
     413, "body_too_large"),
    (b"GET /" + b"a" * HEADER_LIMIT + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Long: " + b"a" * HEADER_LIMIT + b"\r\n\r\n", 431, "header_too_large"),
])
def test_a_request_outside_what_the_server_reads_is_rejected(data: bytes, status: int, kind: str) -> None:
    events, phase = read([data + FAST])
    rejections = [event for event in events if event[0] == "rejection"]
    assert [(event[1], event[3]) for event in rejections] == [(status, kind)]
    assert events[-1][0] == "rejection"  # and nothing after it is read
    assert phase is Phase.REJECTED


def test_the_rejection_says_what_is_wrong() -> None:
    assert read([UNKNOWN_METHOD])[0][-1] == ("rejection", 501, "method BREW is not implemented",
                                             "not_implemented")
    assert read([HTTP2])[0][-1][2] == "HTTP/2.0 is not supported; this server speaks HTTP/1.1"


def test_a_head_that_keeps_growing_is_cut_before_it_ends() -> None:
    # An endless header line: llhttp reports a header only once it ends, so the reader
    # counts the bytes read since the head began.
    reads = [b"GET / HTTP/1.1\r\nHost: t\r\nX-Long: "] + [b"a" * 256] * 10
    events, phase = read(reads, header_limit=1024)
    assert events[-1] == ("rejection", 431, "request header fields too large", "header_too_large")
    assert phase is Phase.REJECTED
    assert read(reads[:4], header_limit=1024)[1] is Phase.HEAD  # under the limit it waits


def test_a_limit_changed_between_reads_applies_from_the_next_check() -> None:
    recorder = Recorder()
    reader = RequestReader(recorder, max_header_bytes=HEADER_LIMIT, max_body_bytes=BODY_LIMIT)
    reader.feed(ECHO[:-5], len(ECHO) - 5)
    reader.max_body_bytes = 3
    reader.feed(ECHO[-5:], 5)
    assert recorder.events[-1] == ("rejection", 413, "body over 3 bytes", "body_too_large")


def test_expect_100_continue_is_said_once_the_head_is_read() -> None:
    events, _ = read([EXPECT[:-5], EXPECT[-5:]])
    assert [event[:2] for event in events] == [("continue",), ("waiting", Phase.BODY), ("request", "POST")]


@pytest.mark.parametrize("rest", [b"", b"\x81\x80\x00\x00\x00\x00"])
def test_an_upgrade_hands_on_what_follows_it(rest: bytes) -> None:
    events, phase = read([WEBSOCKET + rest + FAST])
    assert requests(events)[0][1:3] == ("GET", "/ws")
    assert requests(events)[0][7] is False  # this connection's HTTP ends here
    assert events[-1] == ("upgrade", rest + FAST)
    assert phase is Phase.UPGRADED
    assert read([UPGRADE + FAST])[0][-1] == ("upgrade", FAST)


def test_a_final_phase_reads_nothing_more() -> None:
    recorder = Recorder()
    reader = RequestReader(recorder, max_header_bytes=HEADER_LIMIT, max_body_bytes=BODY_LIMIT)
    reader.feed(NO_HOST, len(NO_HOST))
    seen = list(recorder.events)
    reader.feed(FAST, len(FAST))
    assert recorder.events == seen


def test_every_phase_is_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(Phase)
    final = {phase for phase, onward in TRANSITIONS.items() if not onward}
    assert final == {Phase.UPGRADED, Phase.REJECTED, Phase.CLOSED}


def test_the_phases_a_pipeline_goes_through_are_in_the_table() -> None:
    # WatchedReader fails on any change the table does not allow; here every kind is seen.
    seen = set()
    for data in [*WELL_FORMED, *FINAL, EXPECT, WEBSOCKET, TLS_HELLO, CLOSE]:
        for scan in (scan_head, None):
            recorder = Recorder()
            reader = WatchedReader(recorder, max_header_bytes=HEADER_LIMIT, max_body_bytes=BODY_LIMIT,
                                   scan=scan)
            reader.feed(data + FAST, len(data + FAST))
            seen.update(reader.__dict__.get("changes", []))
    # A listener that fails while told of a request llhttp read: the rest of the read is
    # refused as bytes llhttp refuses are, from between requests.
    reader = WatchedReader(Failing(), max_header_bytes=HEADER_LIMIT, max_body_bytes=BODY_LIMIT, scan=None)
    reader.feed(FAST + FAST, len(FAST + FAST))
    assert reader.__dict__["changes"][-1] == (Phase.IDLE, Phase.REJECTED)
    seen.update(reader.__dict__["changes"])
    allowed = {(phase, onward) for phase, onwards in TRANSITIONS.items() for onward in onwards}
    assert seen == allowed


def test_the_reader_needs_no_socket_loop_or_server() -> None:
    tree = ast.parse(inspect.getsource(reader_module))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "enum", "functools", "collections.abc", "typing", "httptools",
                        "lab.http._headscan"}, imported


# The property tests: the same bytes read the same however they are split, scanner or not.

@settings(max_examples=300, deadline=None)
@given(pipeline=st.lists(st.sampled_from((*WELL_FORMED, EXPECT, ABSOLUTE)), min_size=1, max_size=6),
       last=st.sampled_from((b"", *FINAL, CLOSE + FAST, WEBSOCKET + FAST)),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_pipelines_split_anywhere_read_the_same(pipeline: list[bytes], last: bytes, cuts: list[int]) -> None:
    data = b"".join(pipeline) + last
    whole, phase = read([data])
    split, split_phase = read(split_at(data, cuts))
    assert outcome(split) == outcome(whole)
    assert split_phase is phase


@pytest.mark.parametrize("request_bytes", [*WELL_FORMED, *FINAL, EXPECT])
def test_every_single_cut_reads_the_same(request_bytes: bytes) -> None:
    data = request_bytes + FAST
    whole = outcome(read([data])[0])
    for cut in range(1, len(data)):
        assert outcome(read([data[:cut], data[cut:]])[0]) == whole, f"cut at {cut}"


@settings(max_examples=500, deadline=None)
@given(pipeline=st.lists(st.one_of(heads(), st.sampled_from(WELL_FORMED)), min_size=1, max_size=5),
       last=st.sampled_from((b"", *FINAL)),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
       header_limit=st.sampled_from((256, 300, 16 * 1024)))
def test_the_scanner_and_llhttp_read_the_same(pipeline: list[bytes], last: bytes, cuts: list[int],
                                              header_limit: int) -> None:
    reads = split_at(b"".join(pipeline) + last, cuts)
    scanned, phase = read(reads, header_limit=header_limit)
    parsed, parsed_phase = read(reads, scan=None, header_limit=header_limit)
    assert outcome(scanned) == outcome(parsed)
    assert phase is parsed_phase


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(st.one_of(st.sampled_from((*WELL_FORMED, *FINAL, EXPECT, WEBSOCKET, b"\r\n", b"0\r\n")),
                                st.binary(max_size=40)), min_size=1, max_size=6),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
       scan=st.sampled_from((scan_head, None)))
def test_any_bytes_end_in_requests_then_at_most_one_final_event(parts: list[bytes], cuts: list[int],
                                                                scan: Any) -> None:
    # Hostile bytes between well-formed requests: the reader never raises, every phase change
    # is in the table (WatchedReader), and nothing is reported after a final one.
    events, phase = read(split_at(b"".join(parts), cuts), scan=scan)
    kinds = [event[0] for event in events if event[0] != "waiting"]
    finals = [kind for kind in kinds if kind in ("rejection", "upgrade")]
    assert len(finals) <= 1
    if finals:
        assert kinds[-1] == finals[0]
        assert phase is {"rejection": Phase.REJECTED, "upgrade": Phase.UPGRADED}[finals[0]]
    if phase is Phase.CLOSED:
        assert not requests(events)[-1][7]  # the last request said close


# --- bodies in parts (a hosted ASGI app's connection) -------------------------------------------

class BodyRecorder(Recorder):
    """A listener that takes bodies in parts (lab.http.reader.BodyListener)."""

    def on_request_head(self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]],
                        http_version: str, keep_alive: bool) -> bool:
        self.events.append(("head", method, path, query, http_version, keep_alive))
        return not keep_alive

    def on_body_part(self, data: bytes) -> None:
        self.events.append(("part", data))

    def on_body_end(self) -> bool:
        self.events.append(("end",))
        return False


def read_in_parts(reads: Sequence[bytes],
                  body_limit: int = BODY_LIMIT) -> tuple[list[tuple[Any, ...]], Phase]:
    recorder = BodyRecorder()
    reader = WatchedReader(recorder, max_header_bytes=HEADER_LIMIT, max_body_bytes=body_limit)
    reader.stream_bodies_to(recorder)
    for data in reads:
        reader.feed(bytearray(data), len(data))
    return recorder.events, reader.phase


def test_a_body_listener_hears_the_head_then_each_part_as_it_is_read() -> None:
    head, body = ECHO.split(b"\r\n\r\n")
    events, phase = read_in_parts([head + b"\r\n\r\n", body[:5], body[5:], FAST])
    assert events == [("head", "POST", "/echo", "", "1.1", True), ("part", b"hello"),
                      ("part", b" world"), ("end",),
                      ("request", "GET", "/fast", "", [(b"Host", b"t")], b"", "1.1", True)]
    assert phase is Phase.IDLE


def test_a_chunked_body_reaches_a_body_listener_without_its_framing() -> None:
    events, _ = read_in_parts([ECHO_CHUNKED])
    assert [event for event in events if event[0] != "head"] == [
        ("part", b"hello"), ("part", b" world"), ("end",)]


@pytest.mark.parametrize("data, status", [(NO_HOST, 400), (BAD_CODING, 501),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n", 413)])
def test_a_body_listener_never_hears_a_head_the_reader_refused(data: bytes, status: int) -> None:
    events, phase = read_in_parts([data])
    assert [event[:2] for event in events] == [("rejection", status)]
    assert phase is Phase.REJECTED


def test_a_chunked_body_past_the_limit_midway_is_rejected_after_its_parts() -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    events, phase = read_in_parts([head + b"200\r\n" + b"x" * 512 + b"\r\n", b"300\r\n" + b"y" * 768],
                                  body_limit=1024)
    assert [event[0] for event in events] == ["head", "part", "rejection"]
    assert events[-1][1] == 413 and phase is Phase.REJECTED

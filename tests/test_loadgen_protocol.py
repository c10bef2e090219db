"""How the generator reads answers and counts failures, against raw responders on loopback."""

from __future__ import annotations

import socket
import time

import pytest
from raw_responder import full_backlog, raw_responder

from lab.engine.response import HeadResponseParser, HttpParserError, body_ends_at_close
from lab.loadgen import LoadSpec, run_load
from lab.measure.samples import MISSING, ErrorKind

OK_WITH_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
OK_UNTIL_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until the server closes"
NOT_HTTP = b"SSH-2.0-OpenSSH_9.2\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
HEAD_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
TRUNCATED = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a little"
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LONGER_THAN_DECLARED = OK_WITH_LENGTH + b" and then some"


class _Callbacks:
    def __init__(self) -> None:
        self.completed = 0

    def on_message_complete(self) -> None:
        self.completed += 1


def test_head_responses_end_with_their_head() -> None:
    callbacks = _Callbacks()
    parser = HeadResponseParser(callbacks)
    parser.feed_data(HEAD_ANSWER[:10])
    assert callbacks.completed == 0
    parser.feed_data(HEAD_ANSWER[10:])
    assert (callbacks.completed, parser.get_status_code(), parser.should_keep_alive()) == (1, 200, True)
    with pytest.raises(HttpParserError):
        parser.feed_data(NOT_HTTP)


def test_head_responses_read_past_interim_heads() -> None:
    callbacks = _Callbacks()
    parser = HeadResponseParser(callbacks)
    parser.feed_data(CONTINUE + EARLY_HINTS)
    assert callbacks.completed == 0
    parser.feed_data(HEAD_ANSWER)
    assert (callbacks.completed, parser.get_status_code()) == (1, 200)


def test_a_body_without_length_ends_at_close() -> None:
    assert body_ends_at_close(OK_UNTIL_CLOSE)
    assert body_ends_at_close(EARLY_HINTS + OK_UNTIL_CLOSE)
    assert not body_ends_at_close(OK_WITH_LENGTH)
    assert not body_ends_at_close(EARLY_HINTS + OK_WITH_LENGTH)
    assert not body_ends_at_close(b"HTTP/1.1 204 No Content\r\n\r\n")


def _quick(url: str, **changes: object) -> LoadSpec:
    settings: dict[str, object] = {"url": url, "connections": 2, "duration_seconds": 0.5,
                                   "max_requests": 40, "timeout_seconds": 1.0}
    settings.update(changes)
    return LoadSpec(**settings)  # type: ignore[arg-type]


def test_a_body_read_until_close_is_a_success_and_the_connection_is_reopened() -> None:
    with raw_responder(OK_UNTIL_CLOSE, close_after_answer=True) as responder:
        result = run_load(_quick(responder.url + "/"))
    assert result.errors == {}
    assert result.responses == 40
    assert (result.samples["response_bytes"] == len(OK_UNTIL_CLOSE)).all()
    # every request after the first on each lane waited for a new connection
    assert (result.samples["connect_ns"] != MISSING).sum() >= 40 - 2


def test_garbage_is_counted_as_malformed() -> None:
    with raw_responder(NOT_HTTP) as responder:
        result = run_load(_quick(responder.url + "/"))
    assert result.errors == {"malformed": 40}


def test_bad_statuses_are_answers_counted_by_kind() -> None:
    with raw_responder(NOT_FOUND) as responder:
        result = run_load(_quick(responder.url + "/missing"))
    assert result.errors == {"bad_status": 40}
    assert result.responses == 40
    assert (result.samples["status"] == 404).all()


def test_an_answer_cut_short_is_closed_by_server() -> None:
    with raw_responder(TRUNCATED, close_after_answer=True) as responder:
        result = run_load(_quick(responder.url + "/", max_requests=10))
    assert result.errors == {"closed_by_server": 10}


def test_head_requests_do_not_wait_for_the_announced_body() -> None:
    with raw_responder(HEAD_ANSWER) as responder:
        result = run_load(_quick(responder.url + "/", method="HEAD"))
    assert result.errors == {}
    assert result.responses == 40


def test_a_closed_port_gives_connect_refused_and_a_result() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    result = run_load(_quick(f"http://127.0.0.1:{port}/", max_requests=None, duration_seconds=0.3))
    assert set(result.errors) == {"connect_refused"}
    assert result.requests == result.errors["connect_refused"] > 0
    assert result.responses == 0


def test_a_silent_server_gives_timeouts_within_the_bound() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        port = silent.getsockname()[1]
        result = run_load(_quick(f"http://127.0.0.1:{port}/", timeout_seconds=0.2,
                                 duration_seconds=0.5, max_requests=None))
    assert result.errors.get("timeout", 0) >= 2
    assert set(result.errors) == {"timeout"}
    kinds = set(result.samples["error"].tolist())
    assert kinds == {ErrorKind.TIMEOUT}


def test_a_keepalive_connection_closed_without_notice_is_reopened_and_the_request_retried() -> None:
    """The server answers as if it kept the connection, then closes it: the next request, already
    sent on it, sees the close before any answer byte and goes again on a new connection."""
    with raw_responder(OK_WITH_LENGTH, close_after_answer=True) as responder:
        result = run_load(_quick(responder.url + "/", max_requests=30))
    assert result.errors == {}
    assert result.responses == 30 == responder.requests
    assert (result.samples["connect_ns"] != MISSING).sum() >= 30 - 2


def _dated(date: bytes, status: bytes = b"200 OK", body: bytes = b"OK") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nDate: " + date + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def test_answers_that_repeat_but_for_their_date_are_still_read_exactly() -> None:
    """The generator recognises a repeated answer without parsing it; anything that differs
    outside the Date value (status, length, a line break smuggled into the date) is parsed."""
    answers = [
        _dated(b"Fri, 27 Nov 2026 00:14:39 GMT"),
        _dated(b"Fri, 27 Nov 2026 00:14:40 GMT"),
        _dated(b"Fri, 27 Nov 2026 00:14:41 GMT", b"404 No"),  # same length, other status
        _dated(b"Fri, 27 Nov 2026 00:14:41 GMT", body=b"KO"),
        _dated(b"Fri, 27 Nov 2026 00:14:41 GMT", body=b"longer"),
    ]
    with raw_responder(answers) as responder:
        result = run_load(_quick(responder.url + "/", connections=1, max_requests=50))
    expected_sizes = [len(answer) for answer in answers] * 10
    expected_statuses = [200, 200, 404, 200, 200] * 10
    assert result.samples["response_bytes"].tolist() == expected_sizes
    assert result.samples["status"].tolist() == expected_statuses
    assert result.errors == {"bad_status": 10}


@pytest.mark.timing
def test_an_interim_103_is_read_past_and_the_request_ends_at_its_final_answer() -> None:
    """103 Early Hints at once, the real 200 50 ms later: one request, timed to the 200."""
    with raw_responder((EARLY_HINTS, OK_WITH_LENGTH), pause_s=0.05) as responder:
        result = run_load(_quick(responder.url + "/", max_requests=20, duration_seconds=5))
    assert result.requests == 20 == responder.requests
    assert result.summary.status_codes == {"200": 20}
    assert result.errors == {}
    assert result.latency.p50 >= 45.0


def test_interim_answers_in_the_same_read_as_the_final_one_are_not_counted() -> None:
    with raw_responder(CONTINUE + EARLY_HINTS + OK_WITH_LENGTH) as responder:
        result = run_load(_quick(responder.url + "/"))
    assert result.requests == 40 == responder.requests
    assert result.summary.status_codes == {"200": 40}


def test_a_second_answer_to_one_request_is_malformed() -> None:
    with raw_responder(OK_WITH_LENGTH + NOT_FOUND) as responder:
        result = run_load(_quick(responder.url + "/"))
    assert result.errors == {"malformed": 40}
    assert result.summary.succeeded == 0 and result.summary.status_codes == {}


def test_an_answer_longer_than_it_declared_is_malformed() -> None:
    with raw_responder(LONGER_THAN_DECLARED) as responder:
        result = run_load(_quick(responder.url + "/"))
    assert result.errors == {"malformed": 40}


@pytest.mark.timing
def test_a_port_where_nothing_listens_ends_the_run_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    began = time.monotonic()
    result = run_load(_quick(f"http://127.0.0.1:{port}/", max_requests=None, duration_seconds=30))
    assert time.monotonic() - began < 5  # process start-up included; the run itself:
    assert result.duration_s < 1.0
    assert set(result.errors) == {"connect_refused"}
    assert result.problems == (f"connection refused: nothing is listening on 127.0.0.1:{port}",)


@pytest.mark.timing
def test_a_full_backlog_is_bounded_by_the_timeout_and_gives_a_result() -> None:
    """Connects to a listener that never accepts wait for SYN retransmissions (minutes);
    --timeout bounds them, the connects made before the run included."""
    with full_backlog() as url:
        began = time.monotonic()
        result = run_load(LoadSpec(url=url + "/", connections=4, duration_seconds=2, timeout_seconds=1))
        elapsed = time.monotonic() - began
    assert elapsed < 8
    assert result.requests >= 4 and set(result.errors) == {"timeout"}
    assert result.summary.succeeded == 0
    assert result.verdict()[1] == f"no request succeeded: no answer: {result.requests} timeout"


def test_a_target_is_gone_only_when_refusals_span_three_seconds() -> None:
    """One refusal and a quiet spell (a slow open loop, a listener re-created for a knob) is
    not a target gone; refusals from first to last over GONE_AFTER_NS, with no connect
    between, are. Any lane type's connect resets the count."""
    from lab.engine.core import GONE_AFTER_NS
    from lab.engine.worker import engine_for

    engine = engine_for(LoadSpec(url="http://127.0.0.1:9/", connections=4, duration_seconds=1), 0)
    engine.count_connected()
    engine.count_refused(0)
    assert not engine._nobody_listening()  # one refusal, however long ago
    engine.count_refused(GONE_AFTER_NS - 1)
    assert not engine._nobody_listening()
    engine.count_refused(GONE_AFTER_NS)
    assert engine._nobody_listening()
    engine.count_connected()  # it came back (a listener re-created)
    assert not engine._nobody_listening()

"""The HTTP connection without sockets: the same bytes get the same answers, however split.

A request can arrive in any number of reads, cut anywhere -- inside the request line, a
header name, a chunk size. The connection is fed bytes directly (h11's way of testing), with
a transport that only records what is written, and its output is compared with the output
for the same bytes fed in one read.
"""

from __future__ import annotations

import pytest
from fakes import FAST, FINAL, NOT_FOUND, STATUS_LINE, WELL_FORMED, WRONG_METHOD, answers, split_at
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize("request_bytes", [*WELL_FORMED, *FINAL])
def test_every_single_cut_gives_the_same_answer(loop, request_bytes: bytes) -> None:
    whole = answers(loop, [request_bytes + FAST])
    for cut in range(1, len(request_bytes) + len(FAST)):
        data = request_bytes + FAST
        assert answers(loop, [data[:cut], data[cut:]]) == whole, f"cut at {cut}"


@settings(max_examples=300, deadline=None)
@given(pipeline=st.lists(st.sampled_from(WELL_FORMED), min_size=1, max_size=6),
       last=st.sampled_from((b"", *FINAL)),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       read_buffer=st.sampled_from((256, 300, 4096)))
def test_pipelines_split_anywhere_get_the_same_answers(loop, pipeline: list[bytes], last: bytes,
                                                       cuts: list[int], read_buffer: int) -> None:
    data = b"".join(pipeline) + last
    whole = answers(loop, [data], read_buffer_bytes=read_buffer)
    assert answers(loop, split_at(data, cuts), read_buffer_bytes=read_buffer) == whole


@settings(max_examples=200, deadline=None)
@given(pipeline=st.lists(st.sampled_from(WELL_FORMED), min_size=1, max_size=6))
def test_one_answer_per_request_in_order(loop, pipeline: list[bytes]) -> None:
    written, closed = answers(loop, [b"".join(pipeline)])
    assert written.count(b"HTTP/1.1 ") == len(pipeline)
    assert not closed
    statuses = [int(status) for status in STATUS_LINE.findall(written)]
    expected = {NOT_FOUND: 404, WRONG_METHOD: 405}
    assert statuses == [expected.get(request, 200) for request in pipeline]


@pytest.mark.parametrize("request_bytes", FINAL)
def test_a_request_that_ends_the_connection_gets_one_answer_and_nothing_after(loop, request_bytes):
    written, closed = answers(loop, [request_bytes + FAST + FAST])
    assert written.count(b"HTTP/1.1 ") == 1
    assert closed


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=20),
       limit=st.sampled_from((256, 1024, 4096)))
def test_a_head_over_the_limit_is_refused_however_it_arrives(loop, cuts: list[int], limit: int) -> None:
    data = b"GET /fast HTTP/1.1\r\nHost: t\r\nX-Long: " + b"a" * (4 * limit) + b"\r\n\r\n"
    written, closed = answers(loop, split_at(data, cuts), max_header_bytes=limit, read_buffer_bytes=256)
    assert written.startswith(b"HTTP/1.1 431 ")
    assert closed

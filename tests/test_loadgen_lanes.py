"""The generator's seams: the sample's columns declared once, rows as every lane records them,
answers known again without parsing."""

from __future__ import annotations

import numpy as np

from lab.engine.cluster import _shift
from lab.engine.recorder import ROW, Recorder
from lab.engine.response import RepeatedResponse
from lab.measure.samples import (
    CLOCK_COLUMNS,
    MISSING,
    RECORDED_COLUMNS,
    SAMPLE_DTYPE,
    TIME_COLUMNS,
    TLS_COLUMNS,
    empty,
)


def test_every_recorded_column_comes_back_in_its_own_field() -> None:
    """A row packed with a distinct value per column lands, value by value, in the columns the
    dtype declares: the row format and the dtype cannot drift apart."""
    recorder = Recorder()
    values = [10 + index for index in range(len(RECORDED_COLUMNS))]  # small: error is an int8
    recorder.add(*values)
    recorder.rows += ROW.pack(*(value + 100 for value in values))
    samples = recorder.samples(worker=3)
    assert samples.dtype == SAMPLE_DTYPE and len(samples) == recorder.count == 2
    assert [int(samples[name][0]) for name in RECORDED_COLUMNS] == values
    assert [int(samples[name][1]) for name in RECORDED_COLUMNS] == [value + 100 for value in values]
    assert samples["worker"].tolist() == [3, 3]
    assert set(RECORDED_COLUMNS) | set(TLS_COLUMNS) | {"worker"} == set(SAMPLE_DTYPE.names or ())
    assert np.all(samples["tls_ns"] == MISSING) and np.all(samples["tls_resumed"] == MISSING)


def test_a_handshake_lands_in_the_row_of_the_request_that_opened_its_connection() -> None:
    recorder = Recorder()
    for row in range(4):
        recorder.add(*[10 * row + index for index in range(len(RECORDED_COLUMNS))])
        if row in (1, 3):  # the requests that opened a TLS connection
            recorder.add_tls(1_000 + row, int(row == 3))
    samples = recorder.samples(worker=0)
    assert samples["tls_ns"].tolist() == [MISSING, 1_001, MISSING, 1_003]
    assert samples["tls_resumed"].tolist() == [MISSING, 0, MISSING, 1]


def test_a_worker_clock_moves_its_instants_and_leaves_durations_and_missing_times_alone() -> None:
    samples = empty(2)
    for column in TIME_COLUMNS:
        samples[column][0] = 5_000
    _shift(samples, 700)
    moved = {column for column in TIME_COLUMNS if samples[column][0] == 5_700}
    assert moved == set(CLOCK_COLUMNS) and "connect_ns" not in moved and "tls_ns" not in moved
    assert samples["connect_ns"][0] == 5_000
    assert all(samples[column][1] == MISSING for column in TIME_COLUMNS)
    assert np.all(samples["status"] == 0)


DATED = (b"HTTP/1.1 200 OK\r\nServer: lab\r\nDate: Mon, 07 Dec 2026 16:45:00 GMT\r\n"
         b"Content-Length: 2\r\n\r\nOK")


def test_a_repeated_answer_is_recognised_whole_then_but_for_its_date() -> None:
    repeat = RepeatedResponse.learn(DATED, 200, True)
    assert repeat.last is DATED and repeat.length == len(DATED)
    next_second = DATED.replace(b"16:45:00", b"16:45:01")
    assert next_second != repeat.last and repeat.matches(next_second)
    assert repeat.last is next_second  # compared whole (one ==) from now on
    assert not repeat.matches(DATED.replace(b"200 OK", b"404 No"))  # same length, other status
    assert not repeat.matches(DATED.replace(b"16:45:00", b"16:45\r\n0"))  # a line break in the date
    assert repeat.last is next_second
    lower = RepeatedResponse.learn(DATED.replace(b"Date:", b"date:"), 200, True)
    assert (lower.gap_start, lower.gap_end) == (repeat.gap_start, repeat.gap_end)

"""Queueing figures on samples whose answers are known: in flight, throughput, Little's law."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.errors import ConfigError
from lab.measure.queueing import (
    busy_fraction,
    in_flight,
    kingman_wait_ms,
    littles_law,
    mean_in_flight,
    throughput,
)
from lab.measure.samples import ErrorKind, empty

MS = 1_000_000
BEGIN = 10_000 * MS


def steady_samples(count: int = 1000, *, every_ms: float = 1.0, queued_ms: float = 2.0,
                   served_ms: float = 3.0) -> np.ndarray:
    """One request due every ``every_ms``; each waits ``queued_ms`` in the generator, then
    takes ``served_ms`` from its actual send to its answer."""
    samples = empty(count)
    samples["intended_ns"] = BEGIN + (np.arange(count) * every_ms * MS).astype(np.int64)
    samples["sent_ns"] = samples["intended_ns"] + int(queued_ms * MS)
    samples["first_byte_ns"] = samples["sent_ns"] + int(served_ms * MS) - 1000
    samples["done_ns"] = samples["sent_ns"] + int(served_ms * MS)
    samples["status"] = 200
    samples["error"] = ErrorKind.NONE
    return samples


def test_in_flight_counts_heads_at_instants():
    samples = steady_samples()
    instants = BEGIN + np.array([0, 100 * MS, 500 * MS + MS // 2, 5000 * MS])
    # 5 ms from due to done, one due per ms: 5 in the system once running; none long after.
    assert in_flight(samples, instants).tolist() == [1, 5, 5, 0]
    assert in_flight(samples, instants, corrected=False).tolist() == [0, 3, 3, 0]


def test_littles_law_holds_on_a_steady_run():
    samples = steady_samples()
    law = littles_law(samples, BEGIN + 100 * MS, BEGIN + 900 * MS)
    assert law.throughput_per_s == pytest.approx(1000, rel=0.01)
    assert law.mean_latency_ms == pytest.approx(5.0)
    assert law.measured_in_flight == pytest.approx(5.0, rel=0.02)
    assert law.ratio == pytest.approx(1.0, rel=0.02)
    server_side = littles_law(samples, BEGIN + 100 * MS, BEGIN + 900 * MS, corrected=False)
    assert server_side.mean_latency_ms == pytest.approx(3.0)
    assert server_side.measured_in_flight == pytest.approx(3.0, rel=0.02)


def test_busy_fraction_is_the_share_of_time_with_a_request_on_the_wire():
    # one request every 4 ms, each on the wire for 1 ms (after 2 ms queued in the generator,
    # which does not count): busy a quarter of the time
    samples = steady_samples(every_ms=4.0, queued_ms=2.0, served_ms=1.0)
    assert busy_fraction(samples, BEGIN + 100 * MS, BEGIN + 3900 * MS) == pytest.approx(0.25, abs=0.01)
    always = steady_samples(every_ms=1.0, served_ms=3.0)
    assert busy_fraction(always, BEGIN + 100 * MS, BEGIN + 900 * MS) == 1.0
    with pytest.raises(ConfigError, match="window"):
        busy_fraction(samples, BEGIN, BEGIN)


def test_throughput_counts_completions_in_the_window_only():
    samples = steady_samples()
    assert throughput(samples, BEGIN, BEGIN + 500 * MS) == pytest.approx(1000, rel=0.02)
    assert throughput(samples, BEGIN + 2000 * MS, BEGIN + 3000 * MS) == 0


def test_mean_in_flight_needs_a_window():
    with pytest.raises(ValueError, match="window"):
        mean_in_flight(steady_samples(), BEGIN, BEGIN)


def test_kingman_grows_without_bound_towards_saturation():
    assert kingman_wait_ms(0.5, 2.0) == pytest.approx(2.0)
    assert kingman_wait_ms(0.5, 2.0, arrival_cv2=0, service_cv2=1) == pytest.approx(1.0)
    assert kingman_wait_ms(0.9, 2.0) == pytest.approx(18.0)
    assert kingman_wait_ms(0.0, 2.0) == 0
    assert math.isinf(kingman_wait_ms(1.0, 2.0))
    with pytest.raises(ValueError):
        kingman_wait_ms(-0.1, 2.0)

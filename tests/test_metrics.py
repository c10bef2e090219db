"""``GET /metrics``: a Prometheus request-duration histogram whose buckets are a knob, and the
lab's ``histogram_quantile`` estimate of it, checked against Prometheus's formula applied to
the text the server really served."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from rawhttp import Reader, connect, exchange, get

from lab.errors import ConfigError
from lab.http.config import ServerConfig
from lab.http.metrics import parse_bounds
from lab.measure.prometheus import cumulative_buckets, histogram_quantile, merge_buckets, scraped_buckets
from lab.server import start_server

BUCKETS = "0.001,0.002,0.005,0.01,0.02,0.05"
# Delays spread over several buckets, so the estimate interpolates inside more than one.
DELAYS_MS = [0, 1, 1, 2, 3, 3, 4, 6, 8, 12, 15, 25] * 3
BUCKET_LINE = re.compile(r'^http_request_duration_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M)


def prometheus_formula(q: float, text: str) -> float:
    """promql/quantile.go's bucketQuantile, written out plainly for buckets that are already
    sorted, distinct and monotonic (as one server's scrape is): the rank's bucket, then a
    straight line from its lower bound (0 for the first) to its upper bound."""
    buckets = [(math.inf if le == "+Inf" else float(le), float(count))
               for le, count in BUCKET_LINE.findall(text)]
    total = buckets[-1][1]
    rank = q * total
    for index, (upper, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(upper):
                return buckets[index - 1][0]
            lower, below = (0.0, 0.0) if index == 0 else buckets[index - 1]
            return lower + (upper - lower) * (rank - below) / (count - below)
    raise AssertionError("the +Inf bucket holds every observation")


def scrape(port: int) -> str:
    answer = exchange(port, get("/metrics"))
    assert answer.status == 200
    return answer.body.decode()


def test_the_estimate_equals_prometheus_formula_on_the_scraped_text() -> None:
    with start_server(ServerConfig(metrics=True, metrics_buckets=BUCKETS)) as server:
        with connect(server.port) as sock:
            reader = Reader(sock)
            for delay_ms in DELAYS_MS:
                sock.sendall(get(f"/delay/{delay_ms}"))
                assert reader.response().status == 200
        text = scrape(server.port)
    assert f"http_request_duration_seconds_count {float(len(DELAYS_MS))}" in text
    buckets = scraped_buckets(text)
    assert [bound for bound, _ in buckets] == [*parse_bounds(BUCKETS), math.inf]
    for q in (0.5, 0.75, 0.9, 0.99):
        assert histogram_quantile(q, buckets) == pytest.approx(prometheus_formula(q, text), rel=1e-12)
    # every request slept at least its delay, so the counts are where the delays put them
    counted_by_1ms = dict(buckets)[0.001]
    assert counted_by_1ms <= DELAYS_MS.count(0) + DELAYS_MS.count(1)


def test_streamed_answers_are_observed_with_their_whole_duration() -> None:
    # /stream/3 writes its head at once and its chunks 10 ms apart: a duration taken at the head
    # would fall in the 1 ms bucket, the whole answer's cannot be under 20 ms.
    streams = 4
    with start_server(ServerConfig(metrics=True, metrics_buckets=BUCKETS)) as server:
        for _ in range(streams):
            answer = exchange(server.port, get("/stream/3"))
            assert answer.status == 200
        text = scrape(server.port)
    assert f"http_request_duration_seconds_count {float(streams)}" in text
    assert dict(scraped_buckets(text))[0.01] == 0


def test_metrics_off_is_a_404_that_names_the_knob_and_costs_no_timing() -> None:
    with start_server(ServerConfig()) as server:
        exchange(server.port, get("/fast"))
        answer = exchange(server.port, get("/metrics"))
    assert answer.status == 404 and b"--metrics" in answer.body


def test_a_live_change_of_buckets_starts_the_histogram_again() -> None:
    with start_server(ServerConfig(metrics=True)) as server:
        exchange(server.port, get("/fast"))
        assert "_count 1.0" in scrape(server.port)
        server.reconfigure(metrics_buckets="0.1,1")
        text = scrape(server.port)
    assert [bound for bound, _ in scraped_buckets(text)] == [0.1, 1.0, math.inf]
    assert "_count 0.0" in text


@pytest.mark.parametrize(("text", "why"), [
    ("", "at least one"), ("0.1,abc", "not a number"), ("0.1,0.05", "must increase"),
    ("-1", "positive"), ("inf", "positive finite"),
])
def test_bad_bucket_bounds_are_refused_naming_the_knob(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as refused:
        ServerConfig(metrics_buckets=text)
    assert refused.value.option == "metrics_buckets"


def test_histogram_quantile_follows_prometheus_edge_cases() -> None:
    # the rank in +Inf: the highest finite bound, however far beyond it the values were
    assert histogram_quantile(0.99, [(0.1, 50.0), (math.inf, 100.0)]) == 0.1
    # the first bucket interpolates from 0
    assert histogram_quantile(0.25, [(0.1, 50.0), (math.inf, 100.0)]) == pytest.approx(0.05)
    # unsorted, a repeated bound, and a count that dips are handled as Prometheus does
    messy = [(math.inf, 10.0), (0.2, 6.0), (0.1, 4.0), (0.1, 0.0), (0.3, 5.0)]
    assert histogram_quantile(0.5, messy) == pytest.approx(0.15)
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))
    assert math.isnan(histogram_quantile(0.5, [(0.1, 3.0)]))  # no +Inf bucket
    assert histogram_quantile(-0.1, [(math.inf, 1.0)]) == -math.inf


def test_merged_buckets_are_lossless_and_averaged_quantiles_are_not() -> None:
    rng = np.random.default_rng(3)
    fast = rng.uniform(0.001, 0.004, 900)  # one worker answers quickly
    slow = rng.uniform(0.05, 0.4, 100)  # the other has the tail
    bounds = parse_bounds("0.001,0.0025,0.005,0.01,0.025,0.05,0.1,0.25,0.5,1")
    merged = merge_buckets(cumulative_buckets(fast, bounds), cumulative_buckets(slow, bounds))
    assert merged == cumulative_buckets(np.concatenate([fast, slow]), bounds)
    exact_p99 = float(np.percentile(np.concatenate([fast, slow]), 99))
    averaged = (histogram_quantile(0.99, cumulative_buckets(fast, bounds))
                + histogram_quantile(0.99, cumulative_buckets(slow, bounds))) / 2
    estimated = histogram_quantile(0.99, merged)
    assert abs(estimated - exact_p99) < abs(averaged - exact_p99)

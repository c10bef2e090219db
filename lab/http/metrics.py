"""The server's request-duration histogram, served at ``GET /metrics`` in the Prometheus text
format.

Counting is ours, rendering is prometheus_client's: a request costs one ``bisect`` over the
bounds and three additions on plain attributes of one loop (no lock: one loop owns it), where
``prometheus_client.Histogram.observe`` takes a lock and walks the bounds; the text a scraper
reads is still written by the library (a collector yielding a ``HistogramMetricFamily``), so
it is the format every Prometheus reads. Each worker process keeps its own histogram, as
each instance of a real service does: a dashboard has to add them up.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence

from lab.units import NS_PER_S

METRIC_NAME = "http_request_duration_seconds"
# prometheus_client's Histogram.DEFAULT_BUCKETS (without +Inf, which every layout gets):
# tuned for web requests of tens of milliseconds to seconds.
DEFAULT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
MAX_BUCKETS = 1000  # a layout longer than this is a typo, and each scrape writes every bucket


def parse_bounds(text: str) -> tuple[float, ...]:
    """``"0.005, 0.01, 0.1"`` -> the bucket upper bounds in seconds; ValueError says why not."""
    words = [word.strip() for word in text.split(",") if word.strip()]
    if not words:
        raise ValueError("give at least one bucket bound in seconds, e.g. 0.005,0.01,0.1")
    bounds = []
    for word in words:
        try:
            bound = float(word)
        except ValueError:
            raise ValueError(f"{word!r} is not a number of seconds") from None
        if not math.isfinite(bound) or bound <= 0:
            raise ValueError(f"{word!r} must be a positive finite number of seconds "
                             "(+Inf is always the last bucket)")
        bounds.append(bound)
    if any(later <= earlier for earlier, later in itertools.pairwise(bounds)):
        raise ValueError("the bounds must increase")
    if len(bounds) > MAX_BUCKETS:
        raise ValueError(f"at most {MAX_BUCKETS} buckets")
    return tuple(bounds)


def format_bounds(bounds: Iterable[float]) -> str:
    return ",".join(f"{bound:g}" for bound in bounds)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HELP = ("Time the lab server took to answer a request, from its parsed head to its answer written "
        "(a streamed answer: to its last chunk)")


class RequestDurations:
    """One histogram of request durations: the counts per bucket, their sum and total."""

    __slots__ = ("bounds", "count", "counts", "sum_seconds")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.count = 0
        self.sum_seconds = 0.0

    def observe_ns(self, elapsed_ns: int) -> None:
        seconds = elapsed_ns / NS_PER_S
        # bisect_left: a duration equal to a bound is counted in that bound's bucket (le is <=)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.sum_seconds += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(``le`` as the format writes it, observations at or below it), ``+Inf`` last."""
        running = 0
        found = []
        for bound, count in zip((*map(_le, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            found.append((bound, float(running)))
        return found

    def exposition(self) -> bytes:
        # Imported at the first scrape, not with the server: prometheus_client takes ~0.35 s
        # to import here, which every `import lab` and every worker process would pay.
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.registry import Collector

        family = HistogramMetricFamily(METRIC_NAME, HELP)
        family.add_metric([], self.cumulative(), sum_value=self.sum_seconds)

        class Snapshot(Collector):
            def collect(self) -> Iterator[HistogramMetricFamily]:
                yield family

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Snapshot())
        return generate_latest(registry)


def _le(bound: float) -> str:
    # prometheus_client writes bounds with repr-like floats ("0.005", "1.0"); so do we
    return repr(float(bound))

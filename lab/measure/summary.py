"""What a run's raw samples add up to: the one set of figures of a run, and its timeline.

:func:`summarize_run` is the only place a run's figures are computed. The load generator's
result, its text report and ``--json``, a saved record (``record.json`` caches it), ``runs``,
``show``, ``compare``, the panel and the notebooks all read the :class:`RunSummary` it returns,
so one run never shows two request rates. Everything is computed from the raw samples and the
measured window (exact percentiles, no histogram), so a saved record gives the same figures
when they are computed again.

Definitions (guide, section 3, principle 7):

- ``requests``: every request of the measured window, failed ones included; with retries,
  every attempt (each is a sample), and ``goodput`` tells requests and attempts apart.
- ``responses``: complete answers, whatever their status; ``succeeded``: 2xx/3xx answers.
- ``duration_s``: the real measured time, from the window's start to the later of the end of
  offering and the last completion. A server that could not keep up is still answering (or
  timing out) after the load stops being offered; that drain is part of the run.
- ``rps``: ``responses / duration_s`` -- what was achieved, never what was asked for.
- ``latency``: of successful answers, from the intended send where there is one (corrected
  for coordinated omission); a retry's counts from its request's start. Other answers (404,
  500...) are timed too, per status code in ``by_status``: a fast error page must not make a
  run look fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from lab.errors import ConfigError
from lab.measure import figures as catalogue
from lab.measure import plain
from lab.measure.samples import (
    MISSING,
    ErrorKind,
    error_counts,
    first_attempts,
    latency_ns,
    start_ns,
    ttfb_ns,
)
from lab.measure.stats import PERCENTILES, LatencySummary, percentiles, share_under, summarize
from lab.units import NS_PER_MS, NS_PER_S

if TYPE_CHECKING:
    import pandas as pd

# What a latency figure can be measured as; every report, export and plot takes one of these.
METRICS: dict[str, str] = {
    "latency": "latency, from the intended send where there is one (corrected for coordinated omission)",
    "uncorrected": "latency from the actual send (what a closed-loop tool would report)",
    "ttfb": "time to first byte, from the actual send",
    "connect": "TCP connect time, for requests that opened a connection",
    "tls": "TLS handshake time, for requests that opened a TLS connection (https://, wss://)",
}

# The share the seed article claims, "under 2 ms", and its neighbours. (Its 99.57 % is wrk's
# "+/- Stdev" column, the share within one standard deviation of the mean: lab.notebook.article.)
DEFAULT_THRESHOLDS_MS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)

# Open loop: a request sent more than this long after its intended time counts as late.
DEFAULT_LATE_AFTER_MS = 1.0
# Above this share of late requests, the report says in words that the rate was not kept.
KEPT_UP_LATE_SHARE = 0.01

# Timeline intervals are picked from these "round" lengths, in seconds.
NICE_INTERVALS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
                    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)

ANSWERED = (ErrorKind.NONE, ErrorKind.BAD_STATUS)  # a complete answer came back
NO_CONNECTION = (ErrorKind.CONNECT_REFUSED, ErrorKind.CONNECT_ERROR)


def succeeded(samples: np.ndarray) -> np.ndarray:
    return np.asarray(samples[samples["error"] == ErrorKind.NONE])


def answered(samples: np.ndarray) -> np.ndarray:
    """Requests that got a complete answer, whatever its status."""
    return np.asarray(samples[np.isin(samples["error"], ANSWERED)])


def is_open_loop(samples: np.ndarray) -> bool:
    """True when the samples carry intended send times (the open loop's schedule); a retry's
    is its request's start, in either loop, so only first attempts tell."""
    return bool(np.any(first_attempts(samples)["intended_ns"] != MISSING))


def connect_ns(samples: np.ndarray) -> np.ndarray:
    """Connect times of the requests that opened a connection (a refused connect opened none)."""
    opened = (samples["connect_ns"] != MISSING) & ~np.isin(samples["error"], NO_CONNECTION)
    return np.asarray(samples["connect_ns"][opened], dtype=np.int64)


def tls_ns(samples: np.ndarray) -> np.ndarray:
    """Handshake times of the requests that opened a TLS connection (a failed handshake has
    none: it is a ``tls_failed`` error)."""
    return np.asarray(samples["tls_ns"][samples["tls_ns"] != MISSING], dtype=np.int64)


def metric_ns(samples: np.ndarray, metric: str) -> np.ndarray:
    """One figure per request, in nanoseconds, for a metric named in ``METRICS``: latencies of
    successful requests, connect times of every connection opened."""
    if metric == "latency":
        return latency_ns(samples, corrected=True)
    if metric == "uncorrected":
        return latency_ns(samples, corrected=False)
    if metric == "ttfb":
        return ttfb_ns(samples)
    if metric == "connect":
        return connect_ns(samples)
    if metric == "tls":
        return tls_ns(samples)
    raise ConfigError("metric", f"{metric!r} is not allowed; allowed: one of {', '.join(METRICS)}")


def completion_ns(samples: np.ndarray) -> np.ndarray:
    """When each request ended: its completion, or its start if it never got that far."""
    return np.where(samples["done_ns"] != MISSING, samples["done_ns"], start_ns(samples))


def run_span_ns(samples: np.ndarray) -> tuple[int, int]:
    """(first start, last completion) of a run; (0, 0) when there are no samples."""
    if samples.size == 0:
        return 0, 0
    return int(start_ns(samples).min()), int(completion_ns(samples).max())


def measured_window_ns(samples: np.ndarray, window_ns: tuple[int, int] | None) -> tuple[int, int]:
    """The real measured time: from the window's start to the later of its end (the end of
    offering) and the last completion. Without a window (records saved before windows were
    kept), the samples' own span."""
    first, last = run_span_ns(samples)
    if window_ns is None:
        return first, last
    begin, end = window_ns
    return begin, max(end, last) if samples.size else end


def threshold_key(threshold_ms: float) -> str:
    return f"{threshold_ms:g}"


@dataclass(frozen=True, kw_only=True)
class Goodput:
    """Requests apart from attempts, for a run with retries or a deadline: what its callers got.

    ``attempts == requests + retries``; ``good`` of the ``requests`` succeeded within their
    deadline (any success, without one). Throughput (``RunSummary.rps``) counts every answer
    of every attempt; goodput only the requests that were worth something to their caller.
    """

    attempts: int  # every attempt, first ones and retries: the samples
    requests: int  # first attempts: one per request
    retries: int
    retry_share: float  # retries / attempts: the share of the offered load that retries added
    good: int  # requests answered with 2xx/3xx within their deadline
    goodput: float  # good requests per second of the run's duration
    deadline_ms: float | None

    @property
    def good_share(self) -> float:
        return self.good / self.requests if self.requests else float("nan")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Goodput:
        deadline = values.get("deadline_ms")
        return cls(attempts=int(values["attempts"]), requests=int(values["requests"]),
                   retries=int(values["retries"]),
                   retry_share=plain.number(values["retry_share"], "goodput.retry_share"),
                   good=int(values["good"]), goodput=plain.number(values["goodput"], "goodput.goodput"),
                   deadline_ms=None if deadline is None else float(deadline))


def goodput_of(samples: np.ndarray, duration_s: float, deadline_ms: float | None) -> Goodput:
    """Requests, retries and the requests answered in time, from the samples (one row per
    attempt; a request succeeds at most once, on its last attempt)."""
    attempts = int(samples.size)
    requests = int(np.count_nonzero(samples["attempt"] == 0))
    ok = samples[samples["error"] == ErrorKind.NONE]
    in_time = ok["done_ns"] - start_ns(ok)
    good = int(ok.size if deadline_ms is None else np.count_nonzero(in_time <= deadline_ms * NS_PER_MS))
    return Goodput(attempts=attempts, requests=requests, retries=attempts - requests,
                   retry_share=(attempts - requests) / attempts if attempts else float("nan"),
                   good=good, goodput=good / duration_s if duration_s > 0 else float("nan"),
                   deadline_ms=deadline_ms)


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """Every figure of one run; latencies in milliseconds (NaN where there are no samples)."""

    requests: int  # every request of the measured window, failed ones included
    responses: int  # complete answers, whatever their status
    succeeded: int  # 2xx/3xx answers
    errors: dict[str, int]  # failed requests by ErrorKind label (bad_status included)
    status_codes: dict[str, int]  # answers by HTTP status ("200" -> count)
    duration_s: float  # the real measured time, drain included
    rps: float  # responses per second of duration_s
    bytes_read: int
    open_loop: bool  # intended send times exist, so ``latency`` is corrected
    target_rate: float | None  # open loop: the rate asked for (requests/s)
    late_after_ms: float | None  # open loop: what counts as late
    late: int | None  # open loop: sent more than late_after_ms after their intended time, or never
    latency: LatencySummary  # successful answers, from the intended send where there is one
    uncorrected: LatencySummary | None  # from the actual send; None in a closed loop (== latency)
    ttfb: LatencySummary
    connect: LatencySummary  # connects requests waited for (reconnects, no keep-alive)
    tls: LatencySummary  # TLS handshakes requests waited for, as connect; empty for a plain run
    send_lag: LatencySummary | None  # open loop: actual minus intended send, of sent requests
    by_status: dict[str, LatencySummary]  # latency of every answer, per status code
    share_under: dict[str, float]  # threshold in ms ("2") -> fraction of successful requests below it
    # requests apart from attempts: set for a run with retries or a deadline (or retried samples)
    goodput: Goodput | None = None

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    @property
    def error_share(self) -> float:
        return self.error_total / self.requests if self.requests else float("nan")

    @property
    def late_share(self) -> float | None:
        if self.late is None:
            return None
        # of requests, not attempts: lateness is a first attempt's (a retry waits on purpose)
        requests = self.goodput.requests if self.goodput is not None else self.requests
        return self.late / requests if requests else float("nan")

    @property
    def kept_up(self) -> bool | None:
        """Open loop: whether requests went out on schedule (None for the closed loop)."""
        share = self.late_share
        if share is None:
            return None
        return not share > KEPT_UP_LATE_SHARE

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: NaN becomes None (JSON has no NaN)."""
        plain: dict[str, Any] = {}
        for field in fields(self):
            plain[field.name] = _plain(getattr(self, field.name))
        if self.goodput is None:
            # as summaries were before retries: a record's cached summary still matches
            del plain["goodput"]
        return plain

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunSummary:
        """Inverse of :meth:`as_dict`; a missing or mistyped figure raises KeyError/TypeError/ValueError,
        but a percentile the lab did not list when the summary was saved is NaN, and one it no
        longer lists is left out (see :meth:`LatencySummary.of`)."""
        def latency(part: Any, what: str) -> LatencySummary:
            return LatencySummary.of({key: plain.number(value, f"{what}.{key}")
                                      for key, value in plain.mapping(part, what).items()})

        def optional_latency(key: str) -> LatencySummary | None:
            return None if values[key] is None else latency(values[key], key)

        def counts(key: str) -> dict[str, int]:
            return {str(k): int(v) for k, v in plain.mapping(values[key], key).items()}

        return cls(
            requests=int(values["requests"]), responses=int(values["responses"]),
            succeeded=int(values["succeeded"]), errors=counts("errors"),
            status_codes=counts("status_codes"), duration_s=plain.number(values["duration_s"], "duration_s"),
            rps=plain.number(values["rps"], "rps"), bytes_read=int(values["bytes_read"]),
            open_loop=bool(values["open_loop"]),
            target_rate=None if values["target_rate"] is None else float(values["target_rate"]),
            late_after_ms=None if values["late_after_ms"] is None else float(values["late_after_ms"]),
            late=None if values["late"] is None else int(values["late"]),
            latency=latency(values["latency"], "latency"), uncorrected=optional_latency("uncorrected"),
            ttfb=latency(values["ttfb"], "ttfb"), connect=latency(values["connect"], "connect"),
            # A summary saved before TLS was measured: the run had no handshake.
            tls=(summarize(np.empty(0, np.int64)) if values.get("tls") is None
                 else latency(values["tls"], "tls")),
            send_lag=optional_latency("send_lag"),
            by_status={str(k): latency(v, f"by_status.{k}")
                       for k, v in plain.mapping(values["by_status"], "by_status").items()},
            share_under={str(k): plain.number(v, f"share_under.{k}")
                         for k, v in plain.mapping(values["share_under"], "share_under").items()},
            goodput=(None if values.get("goodput") is None
                     else Goodput.from_dict(plain.mapping(values["goodput"], "goodput"))))


def _plain(value: Any) -> Any:
    if isinstance(value, Goodput):
        return {field.name: _plain(getattr(value, field.name)) for field in fields(value)}
    if isinstance(value, LatencySummary):
        return {key: _plain(v) for key, v in value.as_dict().items()}
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def summarize_run(samples: np.ndarray, *, window_ns: tuple[int, int] | None = None,
                  target_rate: float | None = None, late_after_ms: float = DEFAULT_LATE_AFTER_MS,
                  thresholds_ms: Sequence[float] = DEFAULT_THRESHOLDS_MS,
                  retrying: bool = False, deadline_ms: float | None = None) -> RunSummary:
    """The figures of one run's measured samples (warm-up already left out).

    ``window_ns`` is (start of the measured part, end of offering) in perf_counter_ns;
    ``target_rate`` the open loop's rate, ``late_after_ms`` its lateness bound; ``retrying``
    and ``deadline_ms`` (the load's retries and per-request deadline) add the goodput.
    """
    begin, end = measured_window_ns(samples, window_ns)
    duration_s = (end - begin) / NS_PER_S
    open_loop = target_rate is not None or is_open_loop(samples)
    replies = answered(samples)
    latencies = metric_ns(samples, "latency")
    late, send_lag = _lateness(samples, late_after_ms) if open_loop else (None, None)
    return RunSummary(
        requests=int(samples.size),
        responses=int(replies.size),
        succeeded=int(latencies.size),
        errors=error_counts(samples),
        status_codes=status_counts(replies),
        duration_s=duration_s,
        rps=replies.size / duration_s if duration_s > 0 else float("nan"),
        bytes_read=int(samples["response_bytes"].sum()),
        open_loop=open_loop,
        target_rate=target_rate,
        late_after_ms=late_after_ms if open_loop else None,
        late=late,
        latency=summarize(latencies),
        uncorrected=summarize(metric_ns(samples, "uncorrected")) if open_loop else None,
        ttfb=summarize(metric_ns(samples, "ttfb")),
        connect=summarize(connect_ns(samples)),
        tls=summarize(tls_ns(samples)),
        send_lag=send_lag,
        by_status=latency_by_status(replies),
        share_under={threshold_key(t): share_under(latencies, t) for t in thresholds_ms},
        goodput=(goodput_of(samples, duration_s, deadline_ms)
                 if retrying or deadline_ms is not None or np.any(samples["attempt"] != 0) else None))


def status_counts(replies: np.ndarray) -> dict[str, int]:
    """Answers by status code, in code order: ``{"200": n, "404": m}``."""
    codes, counts = np.unique(replies["status"], return_counts=True)
    return {str(int(code)): int(count) for code, count in zip(codes, counts, strict=True)}


def latency_by_status(replies: np.ndarray) -> dict[str, LatencySummary]:
    """Latency (from the intended send where there is one) of the answers of each status."""
    begin = start_ns(replies)
    return {str(int(code)): summarize((replies["done_ns"] - begin)[replies["status"] == code])
            for code in np.unique(replies["status"])}


def _lateness(samples: np.ndarray, late_after_ms: float) -> tuple[int, LatencySummary]:
    """Open loop: requests sent late or never, and the distribution of the send lag (of first
    attempts: a retry goes out after its backoff on purpose, not late)."""
    samples = first_attempts(samples)
    was_sent = samples[samples["sent_ns"] != MISSING]
    lag_ns = was_sent["sent_ns"] - start_ns(was_sent)
    never_sent = int(samples.size - was_sent.size)
    late = int(np.count_nonzero(lag_ns > late_after_ms * NS_PER_MS)) + never_sent
    return late, summarize(lag_ns)


def failure_reason(summary: RunSummary) -> str | None:
    """Why no request succeeded (no 2xx/3xx answer), in one line; None when some did."""
    if summary.succeeded:
        return None
    if summary.requests == 0:
        return "no request was made"
    if summary.responses == 0:
        return "no answer: " + describe_counts(summary.errors)
    if len(summary.status_codes) == 1:
        return f"every answer was {next(iter(summary.status_codes))}"
    return "no 2xx/3xx answer: " + describe_counts(summary.status_codes)


def describe_counts(counts: Mapping[str, int]) -> str:
    """``{"timeout": 3, "reset": 1}`` -> ``"3 timeout, 1 reset"``, largest first."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{count} {name}" for name, count in ordered)


# --- timeline -------------------------------------------------------------------------------

TIMELINE_COLUMNS = ("start_s", "duration_s", "requests", "requests_per_s", "errors", "errors_per_s",
                    "p50_ms", "p99_ms", "max_ms")


def pick_interval_s(duration_s: float) -> float:
    """About 20 intervals for a short run, one per second (as wrk2 reports) for a longer one,
    and never more than about 1000 intervals."""
    target = duration_s / 20 if duration_s < 20 else max(1.0, duration_s / 1000)
    return next((step for step in NICE_INTERVALS_S if step >= target), NICE_INTERVALS_S[-1])


def timeline(samples: np.ndarray, interval_s: float | None = None) -> pd.DataFrame:
    """Per interval of the run (by completion time): request and error rates, p50/p99/max latency.

    Latency is the corrected figure (from the intended send where there is one), of the
    successful requests that completed in the interval.
    """
    import pandas as pd  # here, not at the top: a generator worker never needs it (~0.25 s to import)

    first, last = run_span_ns(samples)
    if samples.size == 0:
        return pd.DataFrame({column: pd.Series(dtype="float64") for column in TIMELINE_COLUMNS})
    if interval_s is None:
        interval_s = pick_interval_s((last - first) / NS_PER_S)
    interval_ns = max(1, round(interval_s * NS_PER_S))
    span_ns = last - first
    count = max(1, -(-span_ns // interval_ns))
    if count > 1 and span_ns - (count - 1) * interval_ns < interval_ns / 2:
        count -= 1  # a stub of an interval at the end would give a rate from a handful of requests
    # The request that ends the run ends exactly on the last boundary: it belongs to the last
    # interval, not to an empty one of its own.
    bucket = np.minimum((completion_ns(samples) - first) // interval_ns, count - 1)
    requests = np.bincount(bucket, minlength=count)
    errors = np.bincount(bucket[samples["error"] != ErrorKind.NONE], minlength=count)
    starts = np.arange(count) * interval_ns
    # The last interval ends with the run, so its rates are over its real (shorter) length.
    lengths_s = (span_ns - starts) / NS_PER_S
    lengths_s[:-1] = interval_ns / NS_PER_S
    lengths_s[lengths_s <= 0] = np.nan
    p50, p99, peak = _interval_latencies(samples, bucket, count)
    return pd.DataFrame({
        "start_s": starts / NS_PER_S, "duration_s": lengths_s,
        "requests": requests, "requests_per_s": requests / lengths_s,
        "errors": errors, "errors_per_s": errors / lengths_s,
        "p50_ms": p50, "p99_ms": p99, "max_ms": peak})


# A timeline's percentile columns, by the percentile each one is.
TIMELINE_PERCENTILES = {"p50_ms": PERCENTILES["p50"], "p99_ms": PERCENTILES["p99"]}


def timeline_unsupported(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """For each percentile column of a :func:`timeline`, the intervals whose successful
    requests it cannot support (lab.measure.figures.MIN_SAMPLES_BEYOND): the text and JSON
    views mark them; the frame itself keeps the values, which the plots draw."""
    answered = (frame["requests"] - frame["errors"]).to_numpy()
    return {column: np.array([not catalogue.supported(percent, int(count)) for count in answered],
                             dtype=bool)
            for column, percent in TIMELINE_PERCENTILES.items()}


def _interval_latencies(samples: np.ndarray, bucket: np.ndarray,
                        count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = samples["error"] == ErrorKind.NONE
    values = (samples["done_ns"][ok] - start_ns(samples[ok])) / NS_PER_MS
    ok_bucket = bucket[ok]
    order = np.lexsort((values, ok_bucket))
    values, ok_bucket = values[order], ok_bucket[order]
    edges = np.searchsorted(ok_bucket, np.arange(count + 1))
    p50, p99, peak = (np.full(count, np.nan) for _ in range(3))
    for index in range(count):
        part = values[edges[index]:edges[index + 1]]
        if part.size:
            p50[index], p99[index] = percentiles(part, (PERCENTILES["p50"], PERCENTILES["p99"]))
            peak[index] = part[-1]
    return p50, p99, peak

"""What a load run produced: the raw samples, and the figures every report prints from them.

:class:`LoadResult` keeps the pieces plain -- a samples array (``lab.measure.samples`` format), the
spec, ``LatencySummary`` objects -- so that experiment records and exports can take them as
they are. :meth:`LoadResult.to_json_dict` is the ``python -m lab bench --json`` schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab.engine.calibration import Calibration
from lab.engine.spec import LoadSpec
from lab.measure.samples import MISSING, ErrorKind, error_counts, latency_ns, start_ns, ttfb_ns
from lab.measure.stats import LatencySummary, summarize
from lab.options import as_dict
from lab.units import NS_PER_MS, NS_PER_S


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    spec: LoadSpec
    samples: np.ndarray  # every request, warm-up included (lab.measure.samples.SAMPLE_DTYPE)
    start_ns: int  # perf_counter_ns when the load began (all workers share it)
    end_ns: int  # when the load stopped being offered (deadline, request budget, or stop())
    started_at: str  # wall-clock start, ISO 8601 UTC
    warmup_end_ns: int  # requests starting before this are left out of every figure below
    requests: int  # measured requests, errors included
    responses: int  # measured requests that got a complete answer (bad statuses included)
    duration_s: float  # measured window: warm-up end to end_ns
    rps: float  # responses per second over the measured window
    bytes_read: int
    errors: dict[str, int]  # kind -> count, measured window
    latency: LatencySummary  # corrected (from the intended send) in the open loop
    latency_uncorrected: LatencySummary | None  # open loop only: from the actual send
    ttfb: LatencySummary  # time to first byte, from the actual send
    connect: LatencySummary  # connects requests waited for (reconnects, no keep-alive)
    target_rate: float | None
    late: int | None  # open loop: sent more than late_after_ms after their intended time
    send_lag: LatencySummary | None  # open loop: actual minus intended send, sent requests
    abandoned: int  # in flight or queued when stop() ended the run: not in the samples
    stopped_early: bool
    calibration: Calibration | None = None
    problems: tuple[str, ...] = field(default=())  # worker or calibration failures, in words

    @property
    def mode(self) -> str:
        return self.spec.mode

    def measured_samples(self) -> np.ndarray:
        return self.samples[start_ns(self.samples) >= self.warmup_end_ns]

    def spec_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-friendly values (lab.options.as_dict)."""
        return as_dict(self.spec)

    def to_json_dict(self) -> dict[str, Any]:
        """The CLI's ``--json`` object (plain types only; NaN where there were no samples)."""
        out: dict[str, Any] = {
            "mode": self.mode,
            "url": self.spec.url,
            "connections": self.spec.connections,
            "workers": self.spec.workers,
            "started_at": self.started_at,
            "requests": self.requests,
            "responses": self.responses,
            "duration_s": self.duration_s,
            "rps": self.rps,
            "bytes_read": self.bytes_read,
            "errors": dict(self.errors),
            "latency_ms": _figures(self.latency),
            "ttfb_ms": _figures(self.ttfb),
            "connect_ms": _figures(self.connect),
            "abandoned": self.abandoned,
            "stopped_early": self.stopped_early,
        }
        if self.mode == "open":
            out["target_rate"] = self.target_rate
            out["late"] = self.late
            out["latency_uncorrected_ms"] = _figures(self.latency_uncorrected)
            out["send_lag_ms"] = _figures(self.send_lag)
        if self.calibration is not None:
            out["calibration"] = self.calibration.as_dict()
        if self.problems:
            out["problems"] = list(self.problems)
        return out


def _figures(summary: LatencySummary | None) -> dict[str, float] | None:
    if summary is None:
        return None
    figures = summary.as_dict()
    figures.pop("count")
    return figures


def analyse(spec: LoadSpec, samples: np.ndarray, *, start_ns_: int, end_ns: int, started_at: str,
            abandoned: int = 0, stopped_early: bool = False, calibration: Calibration | None = None,
            problems: tuple[str, ...] = ()) -> LoadResult:
    """Turn merged samples into a :class:`LoadResult` (warm-up cut, summaries, counts)."""
    warmup_end = start_ns_ + round(spec.warmup_seconds * NS_PER_S)
    measured = samples[start_ns(samples) >= warmup_end]
    answered = measured[(measured["error"] == ErrorKind.NONE) | (measured["error"] == ErrorKind.BAD_STATUS)]
    duration_s = max(end_ns - warmup_end, 0) / NS_PER_S
    connected = measured[measured["connect_ns"] != MISSING]
    open_loop = spec.mode == "open"
    lag = None
    late = None
    if open_loop:
        was_sent = measured[measured["sent_ns"] != MISSING]
        lag_ns = was_sent["sent_ns"] - was_sent["intended_ns"]
        lag = summarize(lag_ns)
        never_sent = int(np.count_nonzero(measured["sent_ns"] == MISSING))
        late = int(np.count_nonzero(lag_ns > spec.late_after_ms * NS_PER_MS)) + never_sent
    return LoadResult(
        spec=spec, samples=samples, start_ns=start_ns_, end_ns=end_ns, started_at=started_at,
        warmup_end_ns=warmup_end, requests=len(measured), responses=len(answered),
        duration_s=duration_s, rps=len(answered) / duration_s if duration_s > 0 else float("nan"),
        bytes_read=int(measured["response_bytes"].sum()), errors=error_counts(measured),
        latency=summarize(latency_ns(measured, corrected=True)),
        latency_uncorrected=summarize(latency_ns(measured, corrected=False)) if open_loop else None,
        ttfb=summarize(ttfb_ns(measured)), connect=summarize(connected["connect_ns"]),
        target_rate=spec.rate, late=late, send_lag=lag, abandoned=abandoned,
        stopped_early=stopped_early, calibration=calibration, problems=problems)


"""The model of a finished run: what happened to it, its one summary, its stages, its JSON.

A run is its raw samples (:mod:`lab.measure.samples`), its load settings as plain values, and
a :class:`RunOutcome`. From these, :func:`summarize_measured` is the one way to the run's
:class:`~lab.measure.summary.RunSummary` -- for a fresh run in the generator and for a saved
record alike -- and :func:`run_document` the one ``--json`` object (``bench --json`` and
``show RUN --json`` print it from the same inputs, so they print the same thing). The
generator (:mod:`lab.engine.result`) and the records (:mod:`lab.records.record`) both build on
this module; neither owns the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.measure import figures as catalogue
from lab.measure import plain
from lab.measure.samples import start_ns
from lab.measure.stages import Stage, stage_windows_s
from lab.measure.stats import LatencySummary
from lab.measure.summary import DEFAULT_LATE_AFTER_MS, DEFAULT_THRESHOLDS_MS, RunSummary, summarize_run
from lab.measure.thresholds import ThresholdCheck, check_thresholds, verdict
from lab.units import NS_PER_S


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """What happened to a run besides its samples; a record keeps it to print the same figures."""

    window_ns: tuple[int, int]  # measured part: warm-up end to end of offering (perf_counter_ns)
    abandoned: int = 0  # in flight or queued when stop() ended the run: not in the samples
    stopped_early: bool = False  # its owner stopped it (Ctrl-C, SIGTERM, Stop, stop())
    problems: tuple[str, ...] = ()  # worker or calibration failures, in words
    calibration: dict[str, Any] | None = None  # Calibration.as_dict()
    # On a Dask cluster: the scheduler and each worker's share ({"address", "per_worker"}).
    cluster: dict[str, Any] | None = None
    # An https:// or wss:// run: what its connections negotiated, over the whole run (the
    # connections opened before it too), as counts -- {"handshakes", "resumed", "versions",
    # "ciphers", "failures"}, see tls_counts(); None for a plain run.
    tls: dict[str, Any] | None = None

    @property
    def measured_seconds(self) -> float:
        """How long the load was offered after the warm-up: the asked duration, unless stopped."""
        return max(self.window_ns[1] - self.window_ns[0], 0) / NS_PER_S

    def as_dict(self) -> dict[str, Any]:
        return {"window_ns": list(self.window_ns), "abandoned": self.abandoned,
                "stopped_early": self.stopped_early, "problems": list(self.problems),
                "calibration": self.calibration, "cluster": self.cluster, "tls": self.tls}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunOutcome:
        """Inverse of :meth:`as_dict`; mistyped values raise TypeError or ValueError."""
        begin, end = (int(value) for value in plain.sequence(values["window_ns"], "window_ns"))
        return cls(window_ns=(begin, end), abandoned=int(values.get("abandoned", 0)),
                   stopped_early=bool(values.get("stopped_early", False)),
                   problems=tuple(str(problem) for problem in plain.sequence(
                       values.get("problems", []), "problems")),
                   calibration=plain.mapping_or_none(values.get("calibration"), "calibration"),
                   cluster=plain.mapping_or_none(values.get("cluster"), "cluster"),
                   tls=None if values.get("tls") is None else tls_counts(values["tls"]))


def tls_counts(values: Mapping[str, Any]) -> dict[str, Any]:
    """A run's TLS counts, checked (a record's, or several workers' merged by the caller):
    ``handshakes`` and ``resumed`` whole numbers, ``versions``, ``ciphers`` and ``failures``
    (a reason in words) each name -> count. Mistyped values raise TypeError or ValueError."""
    def whole(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"tls.{what} must be a count, not {value!r}")
        return value

    def counts(key: str) -> dict[str, int]:
        return {plain.text(name, f"tls.{key}"): whole(count, f"{key}.{name}")
                for name, count in plain.mapping(values.get(key, {}), f"tls.{key}").items()}

    checked = plain.mapping(values, "tls")
    return {"handshakes": whole(checked.get("handshakes", 0), "handshakes"),
            "resumed": whole(checked.get("resumed", 0), "resumed"),
            "versions": counts("versions"), "ciphers": counts("ciphers"), "failures": counts("failures")}


def tls_document(counts: Mapping[str, Any]) -> dict[str, Any]:
    """The ``tls`` object of an https:// or wss:// run's ``--json``: the version and cipher most
    connections negotiated (null when no handshake succeeded), every one counted, the share
    of handshakes that resumed a session, and why handshakes failed."""
    def most(key: str) -> str | None:
        named: Mapping[str, int] = counts.get(key, {})
        return max(named, key=named.__getitem__) if named else None

    handshakes, resumed = int(counts.get("handshakes", 0)), int(counts.get("resumed", 0))
    return {"version": most("versions"), "cipher": most("ciphers"),
            "versions": dict(counts.get("versions", {})), "ciphers": dict(counts.get("ciphers", {})),
            "handshakes": handshakes, "resumed": resumed,
            "resumed_share": resumed / handshakes if handshakes else None,
            "failures": dict(counts.get("failures", {}))}


def summarize_measured(samples: np.ndarray, load_spec: Mapping[str, Any],
                       window_ns: tuple[int, int] | None, *,
                       thresholds_ms: Sequence[float] = DEFAULT_THRESHOLDS_MS) -> RunSummary:
    """The run's figures from its measured samples, its load settings and its window."""
    rate = _number(load_spec.get("rate"))
    deadline_s = _number(load_spec.get("deadline_seconds"))
    return summarize_run(
        samples, window_ns=window_ns, target_rate=rate if load_spec.get("mode") == "open" else None,
        late_after_ms=stored_late_after_ms(load_spec), thresholds_ms=thresholds_ms,
        retrying=bool(_number(load_spec.get("retries"))),
        deadline_ms=None if deadline_s is None else deadline_s * 1000)


def stored_late_after_ms(load_spec: Mapping[str, Any]) -> float:
    """A stored run's ``late_after_ms``, or the default where a record does not hold a number."""
    late_after = _number(load_spec.get("late_after_ms"))
    return DEFAULT_LATE_AFTER_MS if late_after is None else late_after


def _number(value: Any) -> float | None:
    """A stored setting that should be a number (records written by hand may hold anything)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def threshold_checks(load_spec: Mapping[str, Any], summary: RunSummary) -> tuple[ThresholdCheck, ...]:
    """The spec's thresholds checked against the summary (none when the spec has none)."""
    return check_thresholds(tuple(load_spec.get("thresholds") or ()), summary)


@dataclass(frozen=True)
class StageResult:
    stage: Stage
    summary: RunSummary

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage.describe(), "rate": self.stage.mean_rate,
                "rate_from": self.stage.rate_from, "rate_to": self.stage.rate_to,
                "duration_s": self.stage.duration_s, "planned_requests": self.stage.requests,
                "requests": self.summary.requests, "rps": self.summary.rps,
                "errors": self.summary.error_total, "late": self.summary.late,
                "latency_ms": _figures(self.summary.latency)}


def measured(samples: np.ndarray, warmup_end_ns: int) -> np.ndarray:
    """The samples of the measured part: requests that started once the warm-up was over."""
    return samples[start_ns(samples) >= warmup_end_ns]


def stage_results(samples: np.ndarray, stages: Sequence[Stage], start_ns: int,
                  late_after_ms: float) -> list[StageResult]:
    """Each rate stage's own figures: the requests due within it, summarized by the one
    summary (so a stage's p99 is computed exactly as a run's is). For a run and its record;
    ``start_ns`` is when the first stage began."""
    due = samples["intended_ns"]
    results = []
    for stage, (begin_s, end_s) in zip(stages, stage_windows_s(stages), strict=True):
        window = (start_ns + round(begin_s * NS_PER_S), start_ns + round(end_s * NS_PER_S))
        inside = samples[(due >= window[0]) & (due < window[1])]
        summary = summarize_run(inside, window_ns=window, target_rate=stage.mean_rate,
                                late_after_ms=late_after_ms)
        results.append(StageResult(stage=stage, summary=summary))
    return results


def stages_document(results: Sequence[StageResult]) -> list[dict[str, Any]]:
    """The ``stages`` list of a staged run's ``--json`` object."""
    plain: list[dict[str, Any]] = _json_safe([stage.as_dict() for stage in results])
    return plain


def run_document(summary: RunSummary, load_spec: Mapping[str, Any], *, started_at: str,
                 outcome: RunOutcome) -> dict[str, Any]:
    """The ``--json`` object of a run: plain JSON types only, null where nothing was measured."""
    checks = threshold_checks(load_spec, summary)
    result, reason = verdict(summary, checks, outcome.problems, stopped=outcome.stopped_early)
    document: dict[str, Any] = {
        "mode": load_spec.get("mode"),
        "url": load_spec.get("url"),
        "connections": load_spec.get("connections"),
        "workers": load_spec.get("workers", 1),
        "started_at": started_at,
        "requests": summary.requests,
        "responses": summary.responses,
        "succeeded": summary.succeeded,
        "duration_s": summary.duration_s,
        "rps": summary.rps,
        "bytes_read": summary.bytes_read,
        "status_codes": dict(summary.status_codes),
        "errors": dict(summary.errors),
        "latency_ms": _figures(summary.latency),
        "ttfb_ms": _figures(summary.ttfb),
        "connect_ms": _figures(summary.connect),
        **({"tls_ms": _figures(summary.tls)} if outcome.tls is not None else {}),
        "status_latency_ms": {code: _figures(figures) for code, figures in summary.by_status.items()},
    }
    distributions: dict[str, LatencySummary | None] = {
        "latency_ms": summary.latency, "ttfb_ms": summary.ttfb, "connect_ms": summary.connect,
        **({"tls_ms": summary.tls} if outcome.tls is not None else {}),
        **{f"status_latency_ms.{code}": figures for code, figures in summary.by_status.items()}}
    if summary.open_loop:
        document.update({
            "target_rate": summary.target_rate, "late": summary.late,
            "late_share": summary.late_share, "kept_up": summary.kept_up,
            "latency_uncorrected_ms": _figures(summary.uncorrected),
            "send_lag_ms": _figures(summary.send_lag)})
        distributions.update(latency_uncorrected_ms=summary.uncorrected, send_lag_ms=summary.send_lag)
    if summary.goodput is not None:
        document["goodput"] = summary.as_dict()["goodput"]
    # A percentile too few samples lie beyond is null, not the max under its name: a consumer
    # that reads p99_99 without knowing this list cannot take the max for it (the max is "max").
    document["unsupported_percentiles"] = unsupported_paths(distributions)
    document.update({"abandoned": outcome.abandoned, "stopped_early": outcome.stopped_early,
                     "measured_duration_seconds": outcome.measured_seconds})
    if outcome.tls is not None:
        document["tls"] = tls_document(outcome.tls)
    if outcome.cluster is not None:
        document["cluster"] = outcome.cluster
    if checks:
        document["thresholds"] = [check.as_dict() for check in checks]
    document.update({"outcome": result.name.lower(), "exit_code": int(result), "reason": reason})
    if outcome.calibration is not None:
        document["calibration"] = dict(outcome.calibration)
    if outcome.problems:
        document["problems"] = list(outcome.problems)
    plain: dict[str, Any] = _json_safe(document)
    return plain


def _figures(summary: LatencySummary | None) -> dict[str, float | None] | None:
    if summary is None:
        return None
    figures: dict[str, float | None] = {**summary.as_dict()}
    figures.pop("count")
    for key in catalogue.unsupported_keys(summary.count):
        figures[key] = None
    return figures


def latency_document(summary: LatencySummary, name: str = "latency_ms") -> dict[str, Any]:
    """One run's latency as a JSON object that is not a whole run's (a sweep's round, a
    capacity probe) carries it: ``{name: figures with count, "unsupported_percentiles": [...]}``,
    NaN and the percentiles too few samples lie beyond as null, as :func:`run_document` does."""
    figures: dict[str, Any] = _json_safe(summary.as_dict())
    for key in catalogue.unsupported_keys(summary.count):
        figures[key] = None
    return {name: figures, "unsupported_percentiles": unsupported_paths({name: summary})}


def unsupported_paths(distributions: Mapping[str, LatencySummary | None]) -> list[str]:
    """``latency_ms.p99_9``...: each percentile a JSON document nulled because too few of its
    distribution's samples lie beyond it (lab.measure.figures.MIN_SAMPLES_BEYOND)."""
    return [f"{name}.{key}" for name, summary in distributions.items() if summary is not None
            for key in catalogue.unsupported_keys(summary.count)]


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: figures with no samples behind them become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value

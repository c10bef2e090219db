"""What a load run produced: its raw samples, what happened to it, and its one summary.

:class:`LoadResult` keeps the pieces plain -- a samples array (``lab.measure.samples`` format),
the spec, a :class:`~lab.measure.run.RunOutcome` and the run's
:class:`~lab.measure.summary.RunSummary` -- so that experiment records and exports take them
as they are. The run's model (outcome, summary, stages, ``--json`` object) is
:mod:`lab.measure.run`, shared with the records; its names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import numpy as np

from lab.engine.calibration import Calibration
from lab.engine.spec import LoadSpec
from lab.measure.hiccup import HiccupRecord, run_hiccup_record
from lab.measure.run import (
    RunOutcome,
    StageResult,
    measured,
    run_document,
    stage_results,
    stages_document,
    stored_late_after_ms,
    summarize_measured,
    threshold_checks,
)
from lab.measure.stats import LatencySummary
from lab.measure.summary import RunSummary
from lab.measure.thresholds import Outcome, ThresholdCheck, verdict
from lab.options import as_dict
from lab.units import NS_PER_S

# The run's model moved to lab.measure.run; these names stay importable from here.
__all__ = ["LoadResult", "RunOutcome", "StageResult", "run_document", "stage_results", "stages_document",
           "stored_late_after_ms", "summarize_measured", "threshold_checks", "wall_clock"]


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    spec: LoadSpec
    samples: np.ndarray  # every request, warm-up included (lab.measure.samples.SAMPLE_DTYPE)
    start_ns: int  # perf_counter_ns when the load began (all workers share it)
    started_at: str  # wall-clock start, ISO 8601 UTC
    outcome: RunOutcome
    summary: RunSummary  # every figure of the measured part; see lab.measure.summary
    calibration: Calibration | None = None
    checks: tuple[ThresholdCheck, ...] = field(default=())  # the spec's thresholds, checked
    # hiccup_meter: how late the generator's own loops woke, every 1 ms tick of every worker
    # from the load's start (lab.resources.HICCUP_FIELDS, on the samples' clock); None when off.
    # Only the generator's: a server's meter is the server handle's (ServerHandle.hiccups()).
    generator_hiccups: np.ndarray | None = None

    @classmethod
    def of_run(cls, spec: LoadSpec, samples: np.ndarray, *, start_ns_: int, end_ns: int,
               started_at: str, abandoned: int = 0, stopped_early: bool = False,
               calibration: Calibration | None = None, problems: tuple[str, ...] = (),
               cluster: dict[str, Any] | None = None, tls: dict[str, Any] | None = None,
               generator_hiccups: np.ndarray | None = None) -> LoadResult:
        """The result of merged samples: warm-up cut, the one summary computed, thresholds checked."""
        warmup_end = start_ns_ + round(spec.warmup_seconds * NS_PER_S)
        outcome_ = RunOutcome(window_ns=(warmup_end, max(end_ns, warmup_end)), abandoned=abandoned,
                              stopped_early=stopped_early, problems=problems,
                              calibration=None if calibration is None else calibration.as_dict(),
                              cluster=cluster, tls=tls)
        settings = as_dict(spec)
        summary = summarize_measured(measured(samples, warmup_end), settings, outcome_.window_ns)
        return cls(spec=spec, samples=samples, start_ns=start_ns_, started_at=started_at,
                   outcome=outcome_, summary=summary, calibration=calibration,
                   checks=threshold_checks(settings, summary), generator_hiccups=generator_hiccups)

    def given_up(self, problem: str) -> LoadResult:
        """This result of a run that was stopped because it would not end: incomplete, for
        ``problem``, rather than stopped by its owner."""
        outcome = dataclasses.replace(self.outcome, stopped_early=False,
                                      problems=(*self.outcome.problems, problem))
        return dataclasses.replace(self, outcome=outcome)

    # --- the run ----------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def warmup_end_ns(self) -> int:
        """Requests starting before this are left out of every figure."""
        return self.outcome.window_ns[0]

    @property
    def end_ns(self) -> int:
        """When the load stopped being offered (deadline, request budget, or stop())."""
        return self.outcome.window_ns[1]

    @property
    def abandoned(self) -> int:
        return self.outcome.abandoned

    @property
    def stopped_early(self) -> bool:
        return self.outcome.stopped_early

    @property
    def problems(self) -> tuple[str, ...]:
        return self.outcome.problems

    def measured_samples(self) -> np.ndarray:
        return measured(self.samples, self.warmup_end_ns)

    def spec_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-friendly values (lab.options.as_dict)."""
        return as_dict(self.spec)

    def verdict(self) -> tuple[Outcome, str | None]:
        """Passed, a threshold failed, or no request succeeded -- and why, in one line."""
        return verdict(self.summary, self.checks, self.problems, stopped=self.stopped_early)

    def to_json_dict(self) -> dict[str, Any]:
        """The CLI's ``--json`` object (see :func:`run_document`), with ``stages`` when staged."""
        document = run_document(self.summary, self.spec_dict(), started_at=self.started_at,
                                outcome=self.outcome)
        if self.spec.stages:
            document["stages"] = stages_document(self.stage_results())
        hiccups = self.generator_hiccup_record()
        if hiccups is not None:
            # The shape and key of a record's (export, show --json): a list, each entry saying
            # whose loop it timed; a bench run knows only the generator's.
            document["hiccups"] = [hiccups.as_dict()]
        return document

    def generator_hiccup_record(self) -> HiccupRecord | None:
        """The generator's hiccups as a record keeps them (source "generator"): their
        distribution and the largest of each 100 ms of the measured run; None when not measured."""
        if self.generator_hiccups is None:
            return None
        return run_hiccup_record(self.generator_hiccups, source="generator",
                                 samples=self.measured_samples(), window_ns=self.outcome.window_ns)

    def stage_results(self) -> list[StageResult]:
        """Each rate stage's own figures (see :func:`stage_results`)."""
        return stage_results(self.samples, self.spec.stage_plan, self.start_ns, self.spec.late_after_ms)

    # --- the summary's figures, by their usual names ------------------------------------------

    @property
    def requests(self) -> int:
        return self.summary.requests

    @property
    def responses(self) -> int:
        return self.summary.responses

    @property
    def duration_s(self) -> float:
        return self.summary.duration_s

    @property
    def rps(self) -> float:
        return self.summary.rps

    @property
    def errors(self) -> dict[str, int]:
        return self.summary.errors

    @property
    def latency(self) -> LatencySummary:
        return self.summary.latency

    @property
    def latency_uncorrected(self) -> LatencySummary | None:
        return self.summary.uncorrected

    @property
    def ttfb(self) -> LatencySummary:
        return self.summary.ttfb

    @property
    def connect(self) -> LatencySummary:
        return self.summary.connect

    @property
    def target_rate(self) -> float | None:
        return self.summary.target_rate

    @property
    def late(self) -> int | None:
        return self.summary.late


def wall_clock(monotonic_ns: int) -> str:
    """The wall-clock time of a perf_counter_ns instant, ISO 8601 UTC."""
    if monotonic_ns == 0:
        return datetime.datetime.now(datetime.UTC).isoformat()
    offset_ns = time.time_ns() - perf_counter_ns()
    return datetime.datetime.fromtimestamp((monotonic_ns + offset_ns) / NS_PER_S,
                                           datetime.UTC).isoformat(timespec="microseconds")

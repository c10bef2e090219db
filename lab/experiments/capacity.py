"""How many requests/s does a server take while it still meets its SLO?

    from lab.experiments.capacity import find_capacity

    found = find_capacity("http://127.0.0.1:8080/work/1000", slo=("p99<20ms",))
    print(found.capacity_rps, found.bracket)

Each probe is an open-loop run (constant arrival rate, latency from the intended send, so a
server that falls behind is charged for the queue it builds) checked against the SLO with the
run's own thresholds. The search brackets first -- the rate doubles until a probe fails -- then
halves the bracket until it is narrower than ``precision``, or the time budget is spent: the
total time is bounded, and the answer is the highest rate that passed, never a guess between.

A probe passes when every SLO expression held, at least one request succeeded and nothing
failed. A request the generator sent late is still timed from its intended send, so lateness
(no free connection, a busy machine) counts against the SLO rather than being asked about
separately: at low rates the first request or two of a run are always a little late.

A target that cannot be reached (a probe, confirmed, got no answer and every connect failed:
nothing listening, before the first pass or after the server died mid-search) ends the search
at once: that is not a capacity to bisect, and halving the rate down to one request per second,
or reporting the last pass as the capacity, would only hide it. A probe whose every answer
was an error or a timeout is a failure like any other: a lower rate may pass.

A failed probe is run once more before its rate counts as failed. On a shared machine another
job can take the server's core for a moment, and that can only make latency worse, never
better: a pass is evidence the rate is sustainable, a single failure may be a neighbour.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.addresses import path_in_front_of
from lab.engine.spec import LoadSpec
from lab.errors import ConfigError
from lab.loadgen import run_load
from lab.measure import figures as catalogue
from lab.measure.run import latency_document
from lab.measure.samples import ErrorKind
from lab.measure.summary import RunSummary
from lab.measure.thresholds import Outcome, parse_thresholds

DEFAULT_START_RATE = 100.0
DEFAULT_MAX_RATE = 200_000.0
MINIMUM_RATE = 1.0  # below one request per second, a latency SLO is no longer the question
DEFAULT_PRECISION = 0.05  # stop when the bracket is narrower than 5 % of its lower end
DEFAULT_BUDGET_SECONDS = 120.0
PROBE_OVERHEAD_SECONDS = 1.0  # process start and connecting, on top of each probe's duration
UNREACHABLE_ERRORS = frozenset({ErrorKind.CONNECT_REFUSED.label, ErrorKind.CONNECT_ERROR.label})

Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class Probe:
    rate: float
    passed: bool
    why: str  # "held" or the first reason it failed
    summary: RunSummary
    answered: bool = True  # at least one request succeeded
    unreachable: bool = False  # no answer at all, every request failed to connect

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "passed": self.passed, "why": self.why,
                "requests": self.summary.requests, "rps": self.summary.rps,
                "errors": self.summary.error_total, "late": self.summary.late,
                **latency_document(self.summary.latency)}


@dataclass(frozen=True, kw_only=True)
class CapacityResult:
    url: str
    slo: tuple[str, ...]
    capacity_rps: float  # highest rate that passed; 0 when even the first probe failed
    bracket: tuple[float, float | None]  # (highest pass, lowest fail; None if none failed)
    probes: list[Probe] = field(default_factory=list)
    stopped_by_budget: bool = False
    no_success: str | None = None  # why the search stopped: the target could not be reached
    network_path: str | None = None  # the emulated path the probes crossed (lab/netpath), if any
    plan: CapacityPlan | None = None  # how the search ran (its report lists it)

    def to_json_dict(self) -> dict[str, Any]:
        return {"url": self.url, "slo": list(self.slo), "capacity_rps": self.capacity_rps,
                "bracket": list(self.bracket), "stopped_by_budget": self.stopped_by_budget,
                "no_success": self.no_success, "network_path": self.network_path,
                "probes": [probe.as_dict() for probe in self.probes]}


@dataclass(frozen=True, kw_only=True)
class CapacityPlan:
    url: str
    slo: tuple[str, ...]
    connections: int
    duration_seconds: float
    start_rate: float
    max_rate: float
    precision: float
    budget_seconds: float
    allow_remote: bool = False  # a target outside loopback, which the user must own

    def __post_init__(self) -> None:
        if not self.slo:
            raise ConfigError("thresholds", "give an SLO, e.g. --slo 'p99<20ms'")
        parse_thresholds(self.slo)
        if not 0 < self.precision < 1:
            raise ConfigError("precision", f"{self.precision!r} is out of range; allowed: 0 to 1")
        if self.max_rate < self.start_rate:
            raise ConfigError("max_rate", "must be at least the start rate")
        if self.budget_seconds < self.duration_seconds + PROBE_OVERHEAD_SECONDS:
            raise ConfigError("budget_seconds", "too short for a single probe")
        # a bad URL, rate or duration fails before any probe, named as the caller wrote it
        for option, rate in (("start_rate", self.start_rate), ("max_rate", self.max_rate)):
            try:
                self.spec(rate)
            except ConfigError as error:
                if error.option != "rate":
                    raise
                raise ConfigError(option, error.message) from None

    def spec(self, rate: float) -> LoadSpec:
        return LoadSpec(url=self.url, mode="open", rate=rate, connections=self.connections,
                        duration_seconds=self.duration_seconds, thresholds=self.slo,
                        allow_remote=self.allow_remote)


def probe(plan: CapacityPlan, rate: float) -> Probe:
    result = run_load(plan.spec(rate))
    outcome, reason = result.verdict()
    why = "held" if outcome is Outcome.PASSED else (reason or outcome.name.lower())
    if outcome is Outcome.PASSED and result.summary.error_total:
        why = f"{result.summary.error_total} requests failed"
    return Probe(rate=rate, passed=why == "held", why=why, summary=result.summary,
                 answered=outcome is not Outcome.NO_SUCCESS,
                 unreachable=not result.summary.responses and bool(result.summary.errors)
                 and set(result.summary.errors) <= UNREACHABLE_ERRORS)


def find_capacity(url: str, *, slo: Sequence[str], connections: int = 50,
                  duration_seconds: float = 2.0, start_rate: float = DEFAULT_START_RATE,
                  max_rate: float = DEFAULT_MAX_RATE, precision: float = DEFAULT_PRECISION,
                  budget_seconds: float = DEFAULT_BUDGET_SECONDS, allow_remote: bool = False,
                  on_progress: Progress | None = None) -> CapacityResult:
    """Bracket, then bisect, the highest open-loop rate at which ``slo`` holds."""
    plan = CapacityPlan(url=url, slo=tuple(slo), connections=connections,
                        duration_seconds=duration_seconds, start_rate=start_rate, max_rate=max_rate,
                        precision=precision, budget_seconds=budget_seconds, allow_remote=allow_remote)
    return search(plan, on_progress)


def search(plan: CapacityPlan, on_progress: Progress | None = None) -> CapacityResult:
    # read before the probes: a capacity 40 ms away is another capacity, and the path (a
    # `lab path` or `serve --emulate`) knows nothing of this search to say so itself
    network_path = path_in_front_of(plan.spec(plan.start_rate).target.host)
    deadline = time.monotonic() + plan.budget_seconds
    probes: list[Probe] = []
    passed: float = 0.0
    failed: float | None = None
    rate = plan.start_rate
    out_of_time = False
    no_success = None
    while True:
        if not _time_for_a_probe(plan, deadline):
            out_of_time = True
            break
        result = _probe_and_tell(plan, rate, probes, on_progress)
        if not result.passed and _time_for_a_probe(plan, deadline):
            result = _probe_and_tell(plan, rate, probes, on_progress)  # confirm the failure
        if result.passed:
            passed = rate
        else:
            failed = rate
        if result.unreachable:
            no_success = f"{result.why} (at {rate:,.0f} requests/s)"
            break
        next_rate = _next_rate(plan, passed, failed)
        if next_rate is None:
            break
        rate = next_rate
    return CapacityResult(url=plan.url, slo=plan.slo, capacity_rps=passed, bracket=(passed, failed),
                          probes=probes, stopped_by_budget=out_of_time, no_success=no_success,
                          network_path=network_path, plan=plan)


def _time_for_a_probe(plan: CapacityPlan, deadline: float) -> bool:
    return time.monotonic() + plan.duration_seconds + PROBE_OVERHEAD_SECONDS <= deadline


def _probe_and_tell(plan: CapacityPlan, rate: float, probes: list[Probe],
                    on_progress: Progress | None) -> Probe:
    result = probe(plan, rate)
    probes.append(result)
    if on_progress is not None:
        p99 = catalogue.percentile("p99").shown(result.summary.latency)  # or "too few"
        p99_text = p99 if isinstance(p99, str) else f"{p99:.3g} ms"
        figures = f"; p99 {p99_text}, {result.summary.rps:,.0f} req/s" if result.answered else ""
        on_progress(f"probe {len(probes)}: {rate:,.0f} requests/s -> "
                    f"{'pass' if result.passed else 'fail'} ({result.why}{figures})")
    return result


def _next_rate(plan: CapacityPlan, passed: float, failed: float | None) -> float | None:
    """Double until a failure brackets the capacity, then halve the bracket; None: done."""
    if failed is None:
        if passed >= plan.max_rate:
            return None
        return min(passed * 2, plan.max_rate)
    if passed == 0:
        # even the lowest rate tried fails: bracket downwards, while a rate is worth offering
        return failed / 2 if failed / 2 >= MINIMUM_RATE else None
    if (failed - passed) / passed <= plan.precision:
        return None
    return (passed + failed) / 2

"""Pass/fail conditions on a run's figures, k6's idea for CI: ``p99<5ms``, ``errors<1%``.

An expression is ``FIGURE OPERATOR NUMBER[UNIT]``:

- a latency figure -- ``p50``, ``p90``, ``p95``, ``p99``, ``p99.9``, ``p99.99`` (or k6's
  ``p(99)``), ``mean``, ``min``, ``max``, ``stdev`` -- in ``us``, ``ms`` (the default) or ``s``;
- ``rps``, responses per second over the real measured time;
- ``errors``, failed requests: a share with ``%``, else a count;

and the operator one of ``<``, ``<=``, ``>``, ``>=``. Each is checked against the run's one
:class:`~lab.measure.summary.RunSummary`; a figure that could not be measured (no successful
request, so no p99) does not hold.
"""

from __future__ import annotations

import enum
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lab.errors import ConfigError
from lab.measure.figures import percentiles
from lab.measure.summary import RunSummary, failure_reason

OPTION = "thresholds"
USAGE = "e.g. p50<1ms, p99.9<=20ms, errors<1%, rps>=1000"

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}
TIME_UNITS_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}


def percentile_figures() -> dict[str, str]:
    """``"p99.9"`` -> ``"p99_9"``: each listed percentile's label, and the key that holds it."""
    return {figure.label: figure.key for figure in percentiles()}


OTHER_LATENCY_FIGURES = ("mean", "min", "max", "stdev")

_EXPRESSION = re.compile(
    r"^\s*(?P<figure>p\(\s*[\d.]+\s*\)|[a-z][a-z0-9.]*)\s*(?P<operator><=|>=|<|>)\s*"
    r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>us|µs|ms|s|%)?\s*$")


@dataclass(frozen=True)
class Threshold:
    """One parsed expression; ``limit`` is in ``unit`` as written."""

    expression: str
    figure: str  # "p99_9", "mean", "rps", "errors"
    operator: str
    limit: float
    unit: str  # "ms", "us", "s", "%", or "" (a rate or a count)

    def measured(self, summary: RunSummary) -> float:
        """The run's value of this figure, in this expression's unit."""
        if self.figure == "rps":
            return summary.rps
        if self.figure == "errors":
            return summary.error_share * 100 if self.unit == "%" else float(summary.error_total)
        return float(getattr(summary.latency, self.figure)) / TIME_UNITS_MS[self.unit]

    def check(self, summary: RunSummary) -> ThresholdCheck:
        value = self.measured(summary)
        held = not math.isnan(value) and OPERATORS[self.operator](value, self.limit)
        return ThresholdCheck(self, value, held)


@dataclass(frozen=True)
class ThresholdCheck:
    threshold: Threshold
    measured: float  # NaN when the run has no such figure
    held: bool

    def describe(self) -> str:
        """``✓ p99<5ms (measured 0.412 ms)``"""
        mark = "✓" if self.held else "✗"
        unit = self.threshold.unit
        if math.isnan(self.measured):
            value = "not measured"
        elif unit == "%":
            value = f"measured {self.measured:.3g} %"
        elif unit:
            value = f"measured {self.measured:.4g} {unit}"
        elif self.threshold.figure == "rps":
            value = f"measured {self.measured:,.1f}/s"
        else:
            value = f"measured {self.measured:.0f}"
        return f"{mark} {self.threshold.expression} ({value})"

    def as_dict(self) -> dict[str, object]:
        return {"expression": self.threshold.expression, "held": self.held,
                "measured": None if math.isnan(self.measured) else self.measured,
                "unit": self.threshold.unit}


def parse_threshold(text: str) -> Threshold:
    """Read one expression; a :class:`ConfigError` naming ``thresholds`` says what is wrong."""
    match = _EXPRESSION.match(text.lower())
    if match is None:
        raise ConfigError(OPTION, f"{text!r} is not FIGURE<NUMBER[UNIT]; {USAGE}")
    figure, unit = _figure_name(text, match["figure"]), match["unit"] or ""
    if figure == "rps":
        if unit:
            raise ConfigError(OPTION, f"{text!r}: rps takes a plain number (requests/s)")
    elif figure == "errors":
        if unit not in ("", "%"):
            raise ConfigError(OPTION, f"{text!r}: errors take a count or a share in %")
    else:
        if unit == "%":
            raise ConfigError(OPTION, f"{text!r}: a latency takes us, ms or s")
        unit = unit or "ms"
    return Threshold(expression=text.strip(), figure=figure, operator=match["operator"],
                     limit=float(match["number"]), unit=unit)


def _figure_name(text: str, written: str) -> str:
    if written in ("rps", "errors") or written in OTHER_LATENCY_FIGURES:
        return written
    percent = written.replace("(", "").replace(")", "").replace(" ", "")
    known_percentiles = percentile_figures()
    key = known_percentiles.get(_canonical_percentile(percent))
    if key is None:
        known = ", ".join([*known_percentiles, *OTHER_LATENCY_FIGURES, "rps", "errors"])
        raise ConfigError(OPTION, f"{text!r}: unknown figure {written!r}; known: {known}")
    return key


def _canonical_percentile(written: str) -> str:
    """``p99.90`` and ``p(99)`` name the same figures as ``p99.9`` and ``p99``."""
    try:
        return f"p{float(written.removeprefix('p')):g}"
    except ValueError:
        return written


def parse_thresholds(texts: Sequence[str]) -> tuple[Threshold, ...]:
    return tuple(parse_threshold(text) for text in texts)


def check_thresholds(texts: Sequence[str], summary: RunSummary) -> tuple[ThresholdCheck, ...]:
    return tuple(threshold.check(summary) for threshold in parse_thresholds(texts))


class Outcome(enum.IntEnum):
    """How a run ended, as the exit code ``python -m lab bench`` returns (2 is a usage error)."""

    PASSED = 0  # the run completed and every threshold held
    THRESHOLD_FAILED = 1
    NO_SUCCESS = 3  # no 2xx/3xx answer at all
    INCOMPLETE = 4  # part of the run failed: a worker lost, the target gone mid-run, calibration
    # Its owner stopped it (Ctrl-C, SIGTERM, the panel's Stop, stop()): 128 + SIGINT, as a shell
    # reports a program Ctrl-C ended. A part of a run is not a run that passed.
    STOPPED = 130


def verdict(summary: RunSummary, checks: Sequence[ThresholdCheck],
            problems: Sequence[str] = (), *, stopped: bool = False) -> tuple[Outcome, str | None]:
    """The run's outcome and, when it failed, why in one line.

    A run with problems is incomplete whatever its figures say: they cover only what the rest
    of it measured, so a threshold that held on them proves nothing. A run its owner stopped
    is neither: it was not let finish, whatever its figures say.
    """
    if stopped:
        return Outcome.STOPPED, "; ".join((
            f"stopped before its end, after {summary.duration_s:.2f} s measured: the figures "
            "cover that part only", *problems))
    reason = failure_reason(summary)
    if reason is not None:  # what went wrong in the run too, when something did
        return Outcome.NO_SUCCESS, "; ".join((f"no request succeeded: {reason}", *problems))
    if problems:
        return Outcome.INCOMPLETE, "the run is incomplete: " + "; ".join(problems)
    failed = [check for check in checks if not check.held]
    if failed:
        return Outcome.THRESHOLD_FAILED, "threshold failed: " + "; ".join(
            check.describe().removeprefix("✗ ") for check in failed)
    return Outcome.PASSED, None

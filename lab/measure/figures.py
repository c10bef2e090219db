"""The catalogue of a run's figures: each declared once, with its key, label and unit.

Every view of a run -- bench's text and ``--json``, ``show``, ``compare``, ``runs``, the
panel's table, a record's cached summary -- lists its figures from here, so a figure added
here (a percentile added to :data:`PERCENTILES`) appears in all of them and is named the same
way in each: its ``label`` (``p99.9``), ``label unit`` as a heading (``p99.9 ms``), and
``key_unit`` as a column name (``p99_9_ms``). Only how a value is rounded belongs to a view:
a table read side by side wants four significant digits, wrk's layout three decimals.

Views read the catalogue when they render, never a copy taken at import, so the one list is
the whole truth at any moment (a test adds a percentile to it and checks every view).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The percentiles every view shows (a mean hides the tail), by their JSON key. A key is the
# label with "_" for "." (a JSON key and an attribute name in one), so p99.999 is "p99_999".
PERCENTILES: dict[str, float] = {
    "p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99_9": 99.9, "p99_99": 99.99,
}
# Tables that put runs side by side (compare, the panel) leave these out: p95 sits between
# p90 and p99 and adds a row to every comparison, not a finding. Every other view shows them.
NOT_SIDE_BY_SIDE: frozenset[str] = frozenset({"p95"})


# When a percentile is shown: only where at least MIN_SAMPLES_BEYOND samples lie beyond it,
# count * (1 - p) >= 5. With fewer, the sample at p is one of the run's last handful (under
# 1/(1-p) samples it is the max itself): under its name it would claim a tail the run did not
# sample, as the p99.9 and p99.99 of a 68-request run did. Five is a handful that still moves
# when one request does; so p99 needs 500 samples, p99.9 5,000, p99.99 50,000. Every view shows
# UNSUPPORTED in its place (JSON: null, listed in ``unsupported_percentiles``); the summary
# itself keeps the exact sample, for code that asks for it knowingly.
MIN_SAMPLES_BEYOND = 5
UNSUPPORTED = "too few"


def supported(percent: float, count: int) -> bool:
    """Whether ``count`` samples support the ``percent`` percentile (see MIN_SAMPLES_BEYOND);
    with no samples there is nothing to support or not (the figure is missing)."""
    # a little slack: 500 * (100 - 99) / 100 is 5.000000000000004, 1000 * 0.5 / 100 exactly 5
    return count == 0 or count * (100.0 - percent) / 100.0 >= MIN_SAMPLES_BEYOND * (1 - 1e-9)


def samples_needed(percent: float) -> int:
    """The fewest samples that support a percentile: 500 for p99."""
    return math.ceil(MIN_SAMPLES_BEYOND * 100.0 / (100.0 - percent) * (1 - 1e-9))


def unsupported_keys(count: int) -> list[str]:
    """The keys of the listed percentiles that ``count`` samples do not support."""
    return [key for key in percentile_keys() if not supported(PERCENTILES[key], count)]


def unsupported_note(count: int) -> str:
    """The line under a view that marked some percentiles, or "" when it marked none."""
    keys = unsupported_keys(count)
    if not keys:
        return ""
    labels = ", ".join(f"p{PERCENTILES[key]:g}" for key in keys)
    needs = ", ".join(f"p{PERCENTILES[key]:g} {samples_needed(PERCENTILES[key]):,}" for key in keys)
    samples = "sample" if count == 1 else "samples"
    return (f"{UNSUPPORTED}: fewer than {MIN_SAMPLES_BEYOND} of the {count:,} {samples} lie beyond "
            f"{labels}, which would be the max or next to it; samples needed: {needs}")


def percentile_keys() -> list[str]:
    """The keys of :data:`PERCENTILES`, lowest percentile first, whatever order they were added in."""
    return sorted(PERCENTILES, key=PERCENTILES.__getitem__)


def percentile_key(percent: float) -> str:
    """``99.9`` -> ``"p99_9"``: the rule every key of :data:`PERCENTILES` follows."""
    return f"p{percent:g}".replace(".", "_")


@dataclass(frozen=True)
class Figure:
    """One figure: where a :class:`~lab.measure.summary.RunSummary` holds it, and its name."""

    path: str  # attribute path into a RunSummary ("latency.p99_9") or a LatencySummary ("p99_9")
    label: str  # "p99.9", "requests/s"
    unit: str  # "ms", or "" for a count or where the label says it ("requests/s")
    percent: float | None = None  # for a percentile: 99.9

    @property
    def key(self) -> str:
        """The last part of the path: the JSON key (``p99_9``)."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def heading(self) -> str:
        """How a table's row or column names the figure: ``p99.9 ms``."""
        return f"{self.label} {self.unit}" if self.unit else self.label

    @property
    def column(self) -> str:
        """A data frame column that stays a Python name: ``p99_9_ms``."""
        return f"{self.key}_{self.unit}" if self.unit else self.key

    def value(self, summary: object) -> float | int:
        """The figure in a RunSummary (or, for a bare path, a LatencySummary)."""
        return value_at(summary, self.path)

    def shown(self, summary: object) -> float | int | str:
        """The figure as a view shows it: its value, or :data:`UNSUPPORTED` for a percentile
        that too few of the distribution's samples lie beyond."""
        value = self.value(summary)
        if self.percent is not None:
            part = self.path.rpartition(".")[0]
            count = value_at(summary, f"{part}.count" if part else "count")
            if not math.isnan(count) and not supported(self.percent, int(count)):
                return UNSUPPORTED
        return value

    def of(self, part: str, prefix: str = "") -> Figure:
        """The same figure of one of a run's latency summaries: ``of("ttfb", "ttfb")`` is
        ``ttfb.p99`` headed ``ttfb p99 ms``."""
        return Figure(path=f"{part}.{self.path}", label=f"{prefix} {self.label}".strip(),
                      unit=self.unit, percent=self.percent)


def value_at(summary: object, path: str) -> float | int:
    """The value at an attribute path (``latency.p99``); NaN where the run has none (a closed
    loop has no uncorrected latency)."""
    value: Any = summary
    for part in path.split("."):
        value = getattr(value, part, None) if value is not None else None
    if value is None:
        return float("nan")
    return value if isinstance(value, int) else float(value)


def percentile(key: str) -> Figure:
    percent = PERCENTILES[key]
    return Figure(path=key, label=f"p{percent:g}", unit="ms", percent=percent)


def percentiles(*, side_by_side: bool = False) -> list[Figure]:
    """Every percentile of the list, lowest first; ``side_by_side``: those the comparing
    tables show."""
    return [percentile(key) for key in percentile_keys()
            if not (side_by_side and key in NOT_SIDE_BY_SIDE)]


# The other figures of a latency distribution (a LatencySummary), in milliseconds.
COUNT = Figure(path="count", label="count", unit="")
MEAN = Figure(path="mean", label="mean", unit="ms")
STDEV = Figure(path="stdev", label="stdev", unit="ms")
MIN = Figure(path="min", label="min", unit="ms")
MAX = Figure(path="max", label="max", unit="ms")

# Figures of the whole run (a RunSummary).
REQUESTS = Figure(path="requests", label="requests", unit="")
ERRORS = Figure(path="error_total", label="errors", unit="")
RPS = Figure(path="rps", label="requests/s", unit="")


def distribution() -> list[Figure]:
    """Every figure of a latency distribution, in the order a :class:`LatencySummary` keeps
    (and ``--json`` and ``show`` print) them: count, mean, stdev, min, the percentiles, max."""
    return [COUNT, MEAN, STDEV, MIN, *percentiles(), MAX]


def side_by_side() -> list[Figure]:
    """The figures of a run that ``compare`` and the panel's session table put side by side."""
    latency = [MEAN, STDEV, *percentiles(side_by_side=True), MAX]
    return [REQUESTS, ERRORS, RPS, *(figure.of("latency") for figure in latency),
            percentile("p99").of("uncorrected", "uncorrected"),
            percentile("p50").of("ttfb", "ttfb"), percentile("p99").of("ttfb", "ttfb")]


def last_run() -> list[Figure]:
    """The panel's table of its last run: the tail first, then max, mean and stdev."""
    return [*percentiles(side_by_side=True), MAX, MEAN, STDEV]


def listing() -> list[Figure]:
    """The few latency figures of the ``runs`` listing, one line per run."""
    return [MEAN, percentile("p50"), percentile("p99"), percentile("p99_9"), MAX]

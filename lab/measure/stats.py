"""Exact summaries of latency samples: the figures every report in the lab prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lab.measure.figures import PERCENTILES, percentile_keys
from lab.units import NS_PER_MS

__all__ = ["PERCENTILES", "LatencySummary", "percentile", "percentiles", "share_under", "summarize"]


@dataclass(frozen=True, kw_only=True, repr=False)
class LatencySummary:
    """Summary of one latency distribution, in milliseconds (NaN where there are no samples).

    The percentiles are those of :data:`lab.measure.figures.PERCENTILES`, read as attributes
    (``summary.p99_9``): the list is declared once, and a percentile added to it is a figure
    of every summary computed from then on.
    """

    count: int
    mean: float
    stdev: float
    min: float
    max: float
    points: tuple[tuple[str, float], ...]  # (percentile key, value), in the list's order

    def __getattr__(self, name: str) -> float:
        # Only called for a name that is not a field; __dict__ is read directly, so a copy or
        # an unpickling (which probe attributes before the fields exist) gets AttributeError.
        for key, value in self.__dict__.get("points", ()):
            if key == name:
                return float(value)
        raise AttributeError(f"{type(self).__name__} has no figure {name!r}")

    def __dir__(self) -> list[str]:
        # the percentiles too, so a notebook's tab completion offers summary.p99_9
        return sorted({*super().__dir__(), *(key for key, _ in self.points)})

    def __repr__(self) -> str:
        figures = ", ".join(f"{key}={value!r}" for key, value in self.as_dict().items())
        return f"{type(self).__name__}({figures})"

    def as_dict(self) -> dict[str, float]:
        """The figures by key: count, mean, stdev, min, max, then the percentiles."""
        return {"count": self.count, "mean": self.mean, "stdev": self.stdev, "min": self.min,
                "max": self.max, **dict(self.points)}

    @classmethod
    def of(cls, figures: Mapping[str, float]) -> LatencySummary:
        """From figures by key, as :meth:`as_dict` gives them. A percentile missing (a record
        saved before it was added to the list) is NaN; one no longer listed is left out."""
        nan = float("nan")
        return cls(count=int(figures["count"]), mean=figures["mean"], stdev=figures["stdev"],
                   min=figures["min"], max=figures["max"],
                   points=tuple((key, figures.get(key, nan)) for key in percentile_keys()))


def percentiles(values: npt.ArrayLike, percents: Sequence[float]) -> list[float]:
    """Exact percentiles of ``values``, each one a value that was observed.

    numpy's "higher" method picks a sample, never an interpolation between two: a p99.99 that
    some request really took. Every percentile the lab prints goes through here.
    """
    points = np.percentile(np.asarray(values, dtype=np.float64), list(percents), method="higher")
    return [float(p) for p in points]


def percentile(values: npt.ArrayLike, percent: float) -> float:
    """One exact percentile (see :func:`percentiles`)."""
    return percentiles(values, [percent])[0]


def summarize(latencies_ns: np.ndarray) -> LatencySummary:
    """Exact percentiles from the raw samples (no histogram in between)."""
    values = np.asarray(latencies_ns, dtype=np.float64) / NS_PER_MS
    if values.size == 0:
        nan = float("nan")
        return LatencySummary(count=0, mean=nan, stdev=nan, min=nan, max=nan,
                              points=tuple((key, nan) for key in percentile_keys()))
    keys = percentile_keys()
    points = percentiles(values, [PERCENTILES[key] for key in keys])
    return LatencySummary(
        count=int(values.size), mean=float(values.mean()), stdev=float(values.std()),
        min=float(np.min(values)), max=float(np.max(values)),
        points=tuple(zip(keys, points, strict=True)))


def share_under(latencies_ns: np.ndarray, threshold_ms: float) -> float:
    """Fraction of samples strictly below a threshold (the seed claims 99.57 % under 2 ms; that
    figure is in fact wrk's share within one stdev of the mean: lab.notebook.article)."""
    values = np.asarray(latencies_ns)
    if values.size == 0:
        return float("nan")
    return float(np.count_nonzero(values < threshold_ms * NS_PER_MS) / values.size)

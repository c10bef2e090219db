"""A rate stage of an open-loop run: how long it lasts and the rate it ramps between.

It is part of the run's model: a staged run's record and report give each stage's own
figures (:func:`lab.measure.run.stage_results`). Reading a stage from text
(``30s:100-1000``) and the schedule that sends a staged run's requests are the generator's
(:mod:`lab.engine.stages`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    duration_s: float
    rate_from: float  # requests/s at the stage's start
    rate_to: float  # ... and at its end (equal for a constant stage)

    @property
    def requests(self) -> float:
        """Requests the stage offers: the area under its rate."""
        return (self.rate_from + self.rate_to) / 2 * self.duration_s

    @property
    def mean_rate(self) -> float:
        return (self.rate_from + self.rate_to) / 2

    def seconds_for(self, count: float) -> float:
        """Seconds into the stage at which ``count`` of its requests are due."""
        if count <= 0:
            return 0.0  # also a ramp from 0, where the formula below would divide 0 by 0
        slope = (self.rate_to - self.rate_from) / self.duration_s
        if slope == 0:
            return count / self.rate_from
        # rate_from*t + slope*t^2/2 = count; this form of the root avoids cancellation
        root = math.sqrt(max(self.rate_from ** 2 + 2 * slope * count, 0.0))
        return 2 * count / (self.rate_from + root)

    def describe(self) -> str:
        rate = f"{self.rate_from:g}"
        if self.rate_to != self.rate_from:
            rate += f"-{self.rate_to:g}"
        return f"{self.duration_s:g}s:{rate}"


def stage_windows_s(stages: Sequence[Stage]) -> list[tuple[float, float]]:
    """(start, end) of each stage, in seconds from the run's start."""
    windows: list[tuple[float, float]] = []
    elapsed = 0.0
    for stage in stages:
        windows.append((elapsed, elapsed + stage.duration_s))
        elapsed += stage.duration_s
    return windows

"""Rate stages: an open-loop schedule whose rate is constant or ramps, stage by stage (k6's
``stages``, written ``--stage 30s:1000`` or ``--stage 30s:100-1000`` for a ramp).

The schedule is a cumulative count: ``offered(t)``, the requests due by ``t`` seconds after the
start, is the integral of the rate. Request ``j`` (counting from 0 over all workers) is due
when ``offered(t) == j``, so :meth:`Schedule.due_s` inverts it. With several workers, worker
``w`` of ``W`` sends requests ``w, w + W, w + 2W...``: their merged schedule is exactly the
single schedule, as the constant-rate split with phase offsets was. Within a ramp the rate is
linear, so ``offered`` is a quadratic and its inverse has a closed form -- no request drifts
from where the stage puts it, however long the run.
"""

from __future__ import annotations

import bisect
import math

from lab.errors import ConfigError
from lab.measure.stages import Stage, stage_windows_s
from lab.options import parse_seconds

__all__ = ["MAX_RATE", "OPTION", "USAGE", "Schedule", "Stage", "parse_stage", "parse_stages"]

OPTION = "stages"
USAGE = "DURATION:RATE or DURATION:FROM-TO, e.g. 30s:1000 or 1m:100-2000"
MAX_RATE = 10_000_000.0


def parse_stage(text: str) -> Stage:
    """``1s:500`` or ``30s:100-1000``; a ConfigError naming ``stages`` says what is wrong."""
    duration_text, colon, rate_text = text.strip().partition(":")
    low_text, dash, high_text = rate_text.partition("-")
    try:
        duration = parse_seconds(duration_text)
        low = float(low_text)
        high = float(high_text) if dash else low
    except ValueError:
        raise ConfigError(OPTION, f"{text!r} is not {USAGE}") from None
    if not colon or not math.isfinite(duration) or duration <= 0:
        raise ConfigError(OPTION, f"{text!r}: {USAGE}, with a duration above 0")
    if not (0 <= low <= MAX_RATE and 0 <= high <= MAX_RATE) or (low == high == 0):
        raise ConfigError(OPTION, f"{text!r}: rates from 0 to {MAX_RATE:,.0f} requests/s, "
                          "not both 0")
    if not dash and low == 0:
        raise ConfigError(OPTION, f"{text!r}: a constant stage needs a rate above 0")
    return Stage(duration, low, high)


class Schedule:
    """When each request of a staged run is due."""

    def __init__(self, stages: tuple[Stage, ...]) -> None:
        if not stages:
            raise ConfigError(OPTION, "give at least one stage")
        self.stages = stages
        self.starts_s: list[float] = []  # when each stage starts
        self.offered_before: list[float] = []  # requests due before each stage starts
        elapsed, offered = 0.0, 0.0
        for stage in stages:
            self.starts_s.append(elapsed)
            self.offered_before.append(offered)
            elapsed += stage.duration_s
            offered += stage.requests
        self.duration_s = elapsed
        self.total_requests = offered

    def due_s(self, index: int) -> float | None:
        """Seconds after the start at which request ``index`` is due; None past the last stage."""
        if index >= self.total_requests:
            return None
        # the last stage whose first request is at or before this one (a stage offering
        # nothing -- a ramp between zeros -- is stepped over, as it has no requests)
        at = bisect.bisect_right(self.offered_before, index) - 1
        while self.stages[at].requests == 0 or index - self.offered_before[at] >= self.stages[at].requests:
            at += 1
        return self.starts_s[at] + self.stages[at].seconds_for(index - self.offered_before[at])

    def window_s(self, stage: int) -> tuple[float, float]:
        return stage_windows_s(self.stages)[stage]


def parse_stages(texts: tuple[str, ...]) -> tuple[Stage, ...]:
    return tuple(parse_stage(text) for text in texts)

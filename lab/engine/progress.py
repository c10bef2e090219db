"""Where a run is, as every kind of run reports it: local worker processes or a Dask cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.measure.summary import RunSummary


@dataclass(frozen=True)
class LoadProgress:
    """Where a run is. While it runs: counts so far, warm-up included; once "done": the
    figures of the run's summary (measured requests, failed ones, rps, duration)."""

    phase: str  # "calibrating", "starting", "running", "draining" or "done"
    requests: int  # completed so far (warm-up included), errors included
    errors: int  # failed requests (while running: bad statuses not included)
    elapsed_s: float
    rps: float  # requests per second so far
    seconds_left: float  # until the planned end (0 once draining)

    def __str__(self) -> str:
        return (f"{self.phase}: {self.requests} requests ({self.errors} errors), "
                f"{self.rps:,.0f} req/s, {self.seconds_left:.1f} s left")

    @classmethod
    def done(cls, summary: RunSummary) -> LoadProgress:
        """A finished run's progress is its one summary: the last line a user sees while
        waiting must not disagree with the result."""
        return cls("done", summary.requests, summary.error_total, summary.duration_s, summary.rps, 0.0)

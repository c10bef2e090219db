"""A hiccup meter, as jHiccup measures a JVM: how late a process's own event loop wakes up.

A callback asks to run every ``tick``; each time it runs, how much later than asked is a
*hiccup*: time in which nothing on that loop could have run, whatever the request. A stall of
the platform (a blocking pause, a full garbage collection, the process not scheduled) shows
as a hiccup of about its length at the moment it ended; a slow handler that awaits (the
delay route) leaves the loop free and shows nothing. Set beside a run's latency, the series
tells the two apart -- which the run's latency alone cannot.

The meter only reads the clock and appends two integers per tick. Its wake times are
``time.perf_counter_ns`` (CLOCK_MONOTONIC on Linux), the clock of the run's samples, so a
hiccup can be placed on the run's own time axis, in this process or another. Its figures
(distribution, largest hiccups) are lab/measure/hiccup.py's.
"""

from __future__ import annotations

import array
import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from lab.units import NS_PER_S

# jHiccup's default resolution. The loop's timers (libuv's under uvloop) count whole
# milliseconds, so a finer tick would measure the timer's rounding, not the platform.
DEFAULT_TICK_S = 0.001
# Ten minutes of ticks at 1 ms (16 bytes each, ~10 MB); older ones are dropped beyond that.
MAX_TICKS = 600_000

# A series' columns, as numpy dtype fields (numpy is imported when a series is read, not with
# the server: `python -m lab serve` loads no numpy).
HICCUP_FIELDS = (
    ("at_ns", "<i8"),  # when the loop woke (perf_counter_ns): the end of the hiccup
    ("hiccup_ns", "<i8"),  # how much later than asked it woke (0 when on time)
    ("worker", "<i2"),  # which process's loop (a server with several workers)
)


class HiccupMeter:
    """Measures the running loop's lateness against a fixed tick, from start() to stop()."""

    def __init__(self, tick_s: float = DEFAULT_TICK_S, *, worker: int = 0) -> None:
        self.tick_ns = max(1, round(tick_s * NS_PER_S))
        self.worker = worker
        self._at = array.array("q")
        self._hiccup = array.array("q")
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expected_ns = 0

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start ticking on ``loop`` (from that loop's thread)."""
        if self._timer is not None:
            return
        self._loop = loop
        self._expected_ns = time.perf_counter_ns() + self.tick_ns
        self._timer = loop.call_later(self.tick_ns / NS_PER_S, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None

    def _tick(self) -> None:
        now = time.perf_counter_ns()
        self._at.append(now)
        self._hiccup.append(max(0, now - self._expected_ns))
        if len(self._at) > MAX_TICKS:
            del self._at[:MAX_TICKS // 2]
            del self._hiccup[:MAX_TICKS // 2]
        # The next tick is asked for a tick from now, not from when this one was due: after a
        # 300 ms stall the meter records one 300 ms hiccup, not 300 late ticks in a row.
        self._expected_ns = now + self.tick_ns
        assert self._loop is not None
        self._timer = self._loop.call_later(self.tick_ns / NS_PER_S, self._tick)

    def series(self, since_ns: int = 0) -> np.ndarray:
        """Every tick recorded at or after ``since_ns`` (perf_counter_ns), as HICCUP_FIELDS."""
        import numpy as np

        at = np.frombuffer(self._at, dtype=np.int64).copy()
        hiccups = np.frombuffer(self._hiccup, dtype=np.int64).copy()
        size = min(at.size, hiccups.size)  # a tick may land between the two reads
        keep = at[:size] >= since_ns
        found = np.zeros(int(keep.sum()), dtype=list(HICCUP_FIELDS))
        found["at_ns"] = at[:size][keep]
        found["hiccup_ns"] = hiccups[:size][keep]
        found["worker"] = self.worker
        return found


def merge_series(parts: list[np.ndarray]) -> np.ndarray:
    """Several loops' series as one, in time order."""
    import numpy as np

    if not parts:
        return np.zeros(0, dtype=list(HICCUP_FIELDS))
    merged = np.concatenate(parts)
    return merged[np.argsort(merged["at_ns"], kind="stable")]



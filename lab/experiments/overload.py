"""Overload experiments: a stall under a retrying client, and goodput over time.

A metastable failure (Bronson et al., "Metastable Failures in Distributed Systems", HotOS
2021) is an overload that outlives its trigger: a short stall makes clients time out, their
retries add load, the added load keeps the queue long enough for the next attempts to time
out too, and the system stays down after the stall is over. :func:`run_with_stall` runs a
load against a lab server, freezes the server once with its stall injector (the
``stall_every_seconds``/``stall_ms`` knobs) while the load runs, and keeps when the stall
began and ended; :func:`goodput_timeline` counts, per interval, the requests answered in
time -- counts, not percentiles, so the verdict survives a busy machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lab.engine.result import LoadResult
from lab.engine.spec import LoadSpec
from lab.loadgen import start_load
from lab.measure.samples import ErrorKind, start_ns
from lab.server import ServerHandle
from lab.units import NS_PER_MS, NS_PER_S

# The stall is armed this long after the knob change (the injector's first stall comes
# stall_every_seconds after any change); the second change, sent while the server is frozen,
# is applied once it thaws and so cancels every later stall.
STALL_DELAY_SECONDS = 0.01


@dataclass(frozen=True)
class StallRun:
    """A load run with one server stall in it (perf_counter_ns, the samples' clock)."""

    result: LoadResult
    stall_begin_ns: int
    stall_end_ns: int

    def goodput_around_stall(self, *, before_seconds: float = 1.5,
                             after_seconds: float = 5.0) -> tuple[float, np.ndarray]:
        """(good requests/s over ``before_seconds`` before the stall, good requests in each
        second from the stall's end on)."""
        deadline = self.result.spec.deadline_seconds
        deadline_ms = None if deadline is None else deadline * 1000
        samples = self.result.samples
        before = goodput_timeline(samples, self.stall_begin_ns - round(before_seconds * NS_PER_S),
                                  self.stall_begin_ns, interval_s=before_seconds,
                                  deadline_ms=deadline_ms)
        after = goodput_timeline(samples, self.stall_end_ns,
                                 self.stall_end_ns + round(after_seconds * NS_PER_S),
                                 deadline_ms=deadline_ms)
        return float(before.sum()) / before_seconds, after


def goodput_timeline(samples: np.ndarray, begin_ns: int, end_ns: int, *, interval_s: float = 1.0,
                     deadline_ms: float | None = None) -> np.ndarray:
    """Requests answered with 2xx/3xx (within ``deadline_ms`` of their start, when given) in
    each ``interval_s`` from ``begin_ns`` to ``end_ns``, by when the answer came."""
    ok = samples[samples["error"] == ErrorKind.NONE]
    if deadline_ms is not None:
        ok = ok[ok["done_ns"] - start_ns(ok) <= deadline_ms * NS_PER_MS]
    interval_ns = round(interval_s * NS_PER_S)
    count = max(1, round((end_ns - begin_ns) / interval_ns))
    done = ok["done_ns"][(ok["done_ns"] >= begin_ns) & (ok["done_ns"] < begin_ns + count * interval_ns)]
    return np.bincount((done - begin_ns) // interval_ns, minlength=count)[:count]


def run_with_stall(server: ServerHandle, spec: LoadSpec, *, stall_at_seconds: float = 2.0,
                   stall_seconds: float = 2.0) -> StallRun:
    """Run ``spec`` and stall ``server`` once, ``stall_at_seconds`` into the run, for
    ``stall_seconds``; the run must last past the stall (its duration is the spec's)."""
    run = start_load(spec)
    while run.start_ns is None and not run.done():
        time.sleep(0.01)
    started = run.start_ns or time.perf_counter_ns()
    time.sleep(max(0.0, (started - time.perf_counter_ns()) / NS_PER_S + stall_at_seconds))
    server.reconfigure(stall_every_seconds=STALL_DELAY_SECONDS, stall_ms=stall_seconds * 1000)
    stall_begin_ns = time.perf_counter_ns() + round(STALL_DELAY_SECONDS * NS_PER_S)
    time.sleep(stall_seconds / 2)
    server.reconfigure(stall_every_seconds=None, stall_ms=0.0)  # returns once the server thaws
    stall_end_ns = max(time.perf_counter_ns(), stall_begin_ns + round(stall_seconds * NS_PER_S))
    return StallRun(result=run.result(), stall_begin_ns=stall_begin_ns, stall_end_ns=stall_end_ns)

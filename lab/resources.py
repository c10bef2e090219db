"""The lab's own processes: the limits it raises for itself, so big experiments do not fail on a
default, how it starts them (one start method for the generator's workers, its calibration
and the server's process mode), and how late their event loops wake (the hiccup meter).

The hiccup meter is here because both sides run it: the server's loops (lab/http, which
imports only this foundation) and the generator's workers (lab/engine), which may not import
each other. It is the one meter; its figures are lab/measure/hiccup.py's.
"""

from __future__ import annotations

import array
import asyncio
import multiprocessing
import os
import resource
import sys
import time
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import TYPE_CHECKING

from lab.errors import ConfigError
from lab.units import NS_PER_S

if TYPE_CHECKING:
    import numpy as np

START_METHODS = ("forkserver", "spawn")
# The start methods the lab uses (see process_context).
ProcessContext = SpawnContext | ForkServerContext


def raise_open_file_limit() -> int:
    """Lift this process's soft limit on open files to its hard limit; returns the new soft limit.

    Every connection is a file descriptor: the seed article's 1000-connection run needs more
    than the common default soft limit of 1024 on both the generator's and the server's side.
    Only the soft limit is raised, which needs no privilege.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def refuse_when_imported_by_a_new_process(what: str) -> None:
    """End a process that is importing the user's script to become one of the lab's processes
    (``spawn`` and ``forkserver`` do that) when the script starts ``what`` at its top level.

    Python would raise a long RuntimeError in the new process and the lab would only see it die;
    this says what to do in one line instead (the process exits with status 1).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # Printed here: a forkserver child ends with os._exit, which would drop SystemExit's text.
        print(f"lab: the script started {what} again when a new process of the lab imported it; "
              "put the script's code under `if __name__ == \"__main__\":`", file=sys.stderr, flush=True)
        raise SystemExit(1)


def process_context() -> ProcessContext:
    """forkserver where it exists (fast starts, no copy of a Jupyter kernel's state), else spawn.

    ``LAB_START_METHOD=spawn`` or ``=forkserver`` forces one (forkserver is Python 3.14's default
    on Linux; the test suite runs under it this way on 3.11-3.13). Never fork: forking a kernel
    with its threads and zmq sockets is unsafe.
    """
    method = os.environ.get("LAB_START_METHOD")
    if method is None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return context_for(method)


def context_for(method: str) -> ProcessContext:
    """The multiprocessing context of a start method the lab allows."""
    if method == "spawn":
        return multiprocessing.get_context("spawn")
    if method != "forkserver":
        allowed = ", ".join(START_METHODS)
        raise ConfigError("LAB_START_METHOD", f"{method!r} is not allowed; allowed: {allowed}")
    context = multiprocessing.get_context("forkserver")
    # Imported once in the fork server, so a generator worker starts without importing it.
    context.set_forkserver_preload(["lab.engine.worker"])
    return context


def resident_kib(pid: int) -> int:
    """A process's resident memory (VmRSS), in KiB: what a server really holds, as ``ps`` shows."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    raise ProcessLookupError(f"no resident memory to read for process {pid}: has it exited?")


# --- the hiccup meter ------------------------------------------------------------------------
# As jHiccup measures a JVM: a callback asks to run every ``tick``; each time it runs, how much
# later than asked is a *hiccup*: time in which nothing on that loop could have run, whatever
# the request. A stall of the platform (a blocking pause, a full garbage collection, the
# process not scheduled) shows as a hiccup of about its length at the moment it ended; work
# that awaits (a slow handler, a slow server seen from the generator) leaves the loop free and
# shows nothing. The meter only reads the clock and appends two integers per tick. Its wake
# times are ``time.perf_counter_ns`` (CLOCK_MONOTONIC on Linux), the clock of the run's
# samples, so a hiccup can be placed on the run's own time axis, in this process or another.

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



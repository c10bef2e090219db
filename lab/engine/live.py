"""Live frames of a run: summed in each worker, sent through a pipe, merged in the parent.

Worker side, :class:`FrameMeter`: at the engine's housekeeping (every 50 ms, off the hot
path) it reads the rows recorded since its last look -- the recorder's own bytes, so the
per-request path does not change at all -- and sums them into the frame of the interval they
completed in (:mod:`lab.measure.frames`). A frame whose interval is over is written to the
worker's frame pipe without blocking: a parent that does not read loses frames (counted),
never stalls the generator. The frames of the interval still open when the run ends travel
with the worker's report instead, so nothing is lost at the end.

Parent side, :class:`FrameMerger`: frames of one interval from every worker are merged by
histogram, and an interval is handed out once every worker still running has closed it.

What it costs: one copy of the new rows and a few numpy passes per 100 ms, about 1.4 % of a
worker's CPU on the development machine (``benchmarks/live_view_cost.py``; docs/live.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from multiprocessing.connection import Connection
from typing import Protocol

import numpy as np

from lab.engine.recorder import COLUMNS, Recorder
from lab.errors import ConfigError
from lab.measure.frames import Frame, add_to_histogram, merge_frames
from lab.measure.samples import MISSING, ErrorKind
from lab.units import NS_PER_S

DEFAULT_INTERVAL_SECONDS = 0.1
INTERVAL_RANGE_SECONDS = (0.01, 10.0)
PIPE_BYTES = 1 << 20  # Linux's unprivileged maximum: minutes of typical frames, 25 s of the largest
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

_INTENDED, _SENT, _DONE, _STATUS, _ERROR = (COLUMNS.index(name) for name in
                                            ("intended_ns", "sent_ns", "done_ns", "status", "error"))


def widen_pipe(channel: Connection) -> None:
    """Ask for a 1 MiB pipe buffer; the default 64 KiB is fine too, only shorter."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(channel.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)


def interval_ns(seconds: float) -> int:
    """A live-frame interval in nanoseconds, checked before any run starts (every kind)."""
    low, high = INTERVAL_RANGE_SECONDS
    if not low <= seconds <= high:
        raise ConfigError("live_interval_seconds",
                          f"{seconds!r} is out of range; allowed: {low:g} to {high:g} s")
    return round(seconds * NS_PER_S)


class FrameSink(Protocol):
    """Where a worker's closed frames go: its pipe, or (on Dask) a sender to the run's queue.
    A sink that has no room raises BlockingIOError, and the frame is counted as dropped."""

    def send_bytes(self, buf: bytes) -> None: ...


class FrameMeter:
    """Sums one worker's recorded rows into frames of ``interval_ns`` from ``start_ns``."""

    def __init__(self, recorder: Recorder, channel: FrameSink | None, *, start_ns: int,
                 interval_ns: int) -> None:
        self.recorder = recorder
        self.channel = channel
        self.start_ns = start_ns
        self.interval_ns = interval_ns
        self.read_bytes = 0  # how much of the recorder's rows is summed already
        self.open: dict[int, Frame] = {}  # interval index -> its frame so far
        self.next_index = 0  # the first interval not sent yet
        self.dropped = 0  # frames the pipe had no room for
        self.cpu_ns = 0  # CPU time spent making and sending frames: what the live view costs
        if isinstance(channel, Connection):
            widen_pipe(channel)
            os.set_blocking(channel.fileno(), False)

    def look(self, now_ns: int) -> None:
        """Housekeeping: once an interval is over, sum the new rows and send closed frames."""
        closed = (now_ns - self.start_ns) // self.interval_ns  # intervals before this are over
        if closed <= self.next_index:
            return
        began = time.thread_time_ns()
        self._sum_new_rows()
        for index in range(self.next_index, closed):
            self._send(self.open.pop(index) if index in self.open else Frame(index))
        self.next_index = closed
        self.cpu_ns += time.thread_time_ns() - began

    def rest(self) -> list[bytes]:
        """Every frame not sent yet, the open ones included (the run is over)."""
        began = time.thread_time_ns()
        self._sum_new_rows()
        last = max(self.open, default=self.next_index - 1)
        frames = [(self.open.pop(index) if index in self.open else Frame(index)).encode()
                  for index in range(self.next_index, last + 1)]
        self.next_index = last + 1
        self.cpu_ns += time.thread_time_ns() - began
        return frames

    def _send(self, frame: Frame) -> None:
        if self.channel is None:
            return
        try:
            self.channel.send_bytes(frame.encode())  # <= PIPE_BUF: written whole or not at all
        except BlockingIOError:
            self.dropped += 1

    def _sum_new_rows(self) -> None:
        rows = self.recorder.rows
        end = len(rows)
        if end == self.read_bytes:
            return
        # A copy (bytearray slice): a numpy view would pin the bytearray, which must grow.
        table = np.frombuffer(rows[self.read_bytes:end], dtype=np.int64).reshape(-1, len(COLUMNS))
        self.read_bytes = end
        # Rows are appended as requests complete, in one thread, each stamped with the clock
        # read then: their completion times never decrease, so an interval's rows are one
        # slice (found by bisection: no pass over every row to sort them into intervals).
        done = table[:, _DONE]
        # (An interval already sent takes nothing more: a straggler counts in the next one.)
        first = max((int(done[0]) - self.start_ns) // self.interval_ns, self.next_index)
        last = max((int(done[-1]) - self.start_ns) // self.interval_ns, first)
        bounds = np.searchsorted(done, self.start_ns + np.arange(first + 1, last + 1) * self.interval_ns,
                                 side="left").tolist()
        for interval, begin, stop in zip(range(first, last + 1), [0, *bounds], [*bounds, len(table)],
                                         strict=True):
            if stop > begin:
                frame = self.open.get(interval)
                if frame is None:
                    frame = self.open[interval] = Frame(interval)
                _sum_into(frame, table[begin:stop])


_NONE = int(ErrorKind.NONE)
_BAD_STATUS = int(ErrorKind.BAD_STATUS)


def _sum_into(frame: Frame, table: np.ndarray) -> None:
    """Add rows to a frame: per row a handful of numpy passes, no Python."""
    error = table[:, _ERROR]
    failed = int(np.count_nonzero(error))
    frame.requests += len(table)
    if failed:  # rare: only then the masks
        bad_status = int(np.count_nonzero(error == _BAD_STATUS))
        frame.bad_status += bad_status
        frame.errors += failed - bad_status
        table = table[error == _NONE]
        if not len(table):
            return
    # The open loop's latency runs from the intended send (coordinated omission corrected).
    # A run is one or the other: every row has an intended time (open) or none has (closed).
    begun = _INTENDED if table[0, _INTENDED] != MISSING else _SENT
    latency = table[:, _DONE] - table[:, begun]
    frame.ok += len(table)
    frame.max_ns = max(frame.max_ns, int(latency.max()))
    add_to_histogram(frame.histogram, latency)


class FrameMerger:
    """The parent's side: frames from every worker, merged per interval, in order."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pending: list[Frame] = []
        self.closed_up_to = [0] * workers  # per worker: intervals below this are all sent
        self.finished = [False] * workers
        self.handed_out = 0  # intervals below this were handed out already
        self.dropped = 0
        self.totals = Frame(-1)  # every frame so far, merged: the running percentiles

    def add(self, worker: int, data: bytes) -> None:
        frame = Frame.decode(data)
        self.pending.append(frame)
        self.closed_up_to[worker] = max(self.closed_up_to[worker], frame.index + 1)

    def finish(self, worker: int, rest: list[bytes], dropped: int) -> None:
        """A worker's last frames (with its report): nothing more will come from it."""
        for data in rest:
            self.add(worker, data)
        self.finished[worker] = True
        self.dropped += dropped

    def ready(self) -> list[Frame]:
        """Merged frames of the intervals every running worker has closed, not handed out yet."""
        if all(self.finished):
            upto = max((frame.index + 1 for frame in self.pending), default=self.handed_out)
        else:
            upto = min(closed for closed, done in zip(self.closed_up_to, self.finished, strict=True)
                       if not done)
        taken = [frame for frame in self.pending if frame.index < upto]
        self.pending = [frame for frame in self.pending if frame.index >= upto]
        merged = {frame.index: frame for frame in merge_frames(taken)}
        # Every interval gets a frame, an empty one where no worker completed anything.
        out = [merged.get(index) or Frame(index)
               for index in range(self.handed_out, max(upto, self.handed_out))]
        for frame in out:
            self.totals.add(frame)
        self.handed_out = max(self.handed_out, upto)
        return out

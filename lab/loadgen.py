"""The load generator: closed loop (wrk) and open loop (wrk2) with trustworthy numbers.

From Python::

    import lab
    result = lab.run_load(lab.LoadSpec(url="http://127.0.0.1:8080/fast", connections=50,
                                       duration_seconds=5))
    print(result.rps, result.latency.p99)

From a notebook, without blocking the kernel::

    run = lab.start_load(lab.LoadSpec(url=..., mode="open", rate=2000, duration_seconds=30))
    run.progress()          # requests so far, requests/s so far, seconds left
    result = await run.wait(on_progress=print)   # or run.result(), run.stop()

    run = lab.start_load(spec, live=True)   # live frames: what each 100 ms looked like
    run.live_frames()       # merged frames of the intervals every worker has closed

Local or on a Dask cluster (``cluster="local:2"``), a run is a :class:`~lab.engine.run.Run`:
the same questions, the same answers, the same live frames.

The load always runs in worker processes of its own (``workers`` of them), never in the
caller's process: a generator sharing a GIL with a notebook or a server measures itself.
Each worker runs an :class:`~lab.engine.core.Engine` on uvloop; the parent merges samples.

What the figures mean
---------------------
- Every request is one row of ``result.samples`` (``lab.measure.samples`` format), errors included;
  nothing is dropped. Rows whose start (intended send, else actual send) falls in the
  warm-up stay in the samples but are left out of every figure.
- ``latency``: from the intended send time in the open loop (coordinated-omission
  corrected), from the actual send in the closed loop; ``latency_uncorrected`` (open loop)
  from the actual send. Only successful requests (2xx/3xx, no error kind) count; every
  answer, whatever its status, is also timed per status code (``summary.by_status``), and
  ``summary.status_codes`` counts them. Interim 1xx answers are not answers: a request ends
  at its final one.
- ``late`` (open loop): requests sent more than ``late_after_ms`` after their intended time,
  because no connection was free or the generator fell behind, plus those never sent.
  ``send_lag`` is the distribution of that delay: the generator's own schedule keeping.
- ``rps``: answered requests (bad statuses included) per second of the real measured time,
  from the end of the warm-up to the later of the end of offering and the last completion
  (so a server that fell behind is charged for its drain). Every figure is the one
  ``result.summary`` (lab.measure.summary); nothing computes a figure a second way.
- A keep-alive connection the server closes is reopened; a request that finds its reused
  connection closed before any answer byte (the server closed it while idle) is sent again
  once on a new one, charged with the wait. Connect times are in ``connect`` (connections
  opened before the run starts are not charged to any request).
- ``calibration`` (``calibrate=True``): the generator's own added latency per request, see
  :mod:`lab.engine.calibration`.
- Open-loop sends are on time to some microseconds on an idle machine: libuv timers only
  have millisecond resolution, so the schedule is kept with a timerfd (lab.engine.timer)
  that wakes the loop 50 µs early, and the last stretch is polled.
- ``live=True``: each worker also sums every interval (100 ms) into a frame -- counts, the
  slowest request, a log-bucket latency histogram -- and sends it to the parent while the run
  goes on; ``run.live_frames()`` merges them across workers by histogram (lab.engine.live).
  Never raw samples: the generator's rate is unchanged within noise
  (benchmarks/live_view_cost.py).
- ``stages`` (``LoadSpec(mode="open", stages=("10s:500", "30s:500-5000"))``): the open loop's
  rate follows constant stages and linear ramps (lab.engine.stages); ``result.stage_results()``
  gives each stage's own summary, and ``--json`` lists them under ``stages``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from lab.engine.calibration import DEFAULT_REQUESTS, Calibration, start_calibration
from lab.engine.live import DEFAULT_INTERVAL_SECONDS, FrameMerger, interval_ns
from lab.engine.progress import LoadProgress
from lab.engine.result import LoadResult, wall_clock
from lab.engine.run import Run, follow_to_end
from lab.engine.secure import check_settings, merge_counts
from lab.engine.spec import LoadSpec
from lab.engine.worker import SharedBoard, WorkerReport, plan_for, start_workers
from lab.errors import ConfigError
from lab.measure.frames import Frame
from lab.measure.samples import SAMPLE_DTYPE, merge
from lab.resources import merge_series, process_context, refuse_when_imported_by_a_new_process
from lab.units import NS_PER_S

if TYPE_CHECKING:
    from lab.engine.cluster import ClusterRun  # imported only when a cluster is asked for

__all__ = ["LoadProgress", "LoadResult", "LoadRun", "LoadSpec", "Run", "run_load", "start_load"]

JOIN_SECONDS = 10.0
STARTUP_ALLOWANCE_SECONDS = 60.0  # process start, calibration, connecting
STOP_WAIT_SECONDS = 10.0


class LoadRun(Run):
    """A load running in its own processes. Poll it; it never needs a thread of yours."""

    def __init__(self, spec: LoadSpec, *, calibrate: bool = False,
                 calibration_requests: int = DEFAULT_REQUESTS, live: bool = False,
                 live_interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        if calibrate and spec.target.websocket:
            # The calibration times the HTTP lane against an HTTP responder: its figure
            # would be shown beside WebSocket latencies it says nothing about.
            raise ConfigError("calibrate", "measures the HTTP path only; not available for ws://")
        frame_interval_ns = interval_ns(live_interval_seconds) if live else None  # before anything starts
        self.spec = spec
        context = process_context()
        self._board: SharedBoard = SharedBoard(context, spec.workers, extra_parties=int(calibrate))
        self._calibration_process: Any = None
        self._calibration_channel: Connection | None = None
        self._calibration: Calibration | None = None
        self._problems: list[str] = []
        if calibrate:
            # Calibration goes first; the workers connect meanwhile and start when it is done.
            self._calibration_process, self._calibration_channel = start_calibration(
                context, calibration_requests, barrier=self._board.barrier)
        self.live_interval_s = live_interval_seconds if live else None
        self._merger = FrameMerger(spec.workers) if live else None
        self._processes, self._channels, self._frame_channels = start_workers(
            spec, context, self._board,
            frame_interval_ns=frame_interval_ns)
        self._open_frame_channels = set(range(len(self._frame_channels)))
        self._reports: dict[int, WorkerReport] = {}
        self._parts: dict[int, np.ndarray] = {}
        self._result: LoadResult | None = None
        self._stopped = False

    # --- polling ----------------------------------------------------------------------------

    def progress(self) -> LoadProgress:
        self._collect(timeout=0)
        completed, errors = self._board.totals()
        start = self._board.start_ns()
        if start == 0:
            calibrating = self._calibration_channel is not None and self._calibration is None
            return LoadProgress("calibrating" if calibrating else "starting", 0, 0, 0.0, 0.0,
                                self._planned_seconds())
        if self.done():
            # Once done, progress is the run's one summary: the last line a user sees while
            # waiting must not disagree with the result.
            return LoadProgress.done(self.result().summary)
        now = perf_counter_ns()
        elapsed = max(now - start, 0) / NS_PER_S
        left = max(self._planned_seconds() - elapsed, 0.0)
        phase = "running" if left > 0 and not self._stopped else "draining"
        return LoadProgress(phase, completed, errors, elapsed,
                            completed / elapsed if elapsed > 0 else 0.0, left)

    @property
    def start_ns(self) -> int | None:
        """When the workers started (perf_counter_ns, warm-up included); None before that."""
        return self._board.start_ns() or None

    def live_frames(self) -> list[Frame]:
        """The frames not handed out yet of the intervals every worker has closed, merged
        across workers by histogram (``live=True`` runs; empty otherwise). Once the run is
        done, the last ones too: together they count every request of the run."""
        self._collect(timeout=0)
        return [] if self._merger is None else self._merger.ready()

    @property
    def live_totals(self) -> Frame | None:
        """Every frame handed out so far, merged: the running counts and percentiles."""
        return None if self._merger is None else self._merger.totals

    @property
    def generator_cpu_seconds(self) -> float:
        """CPU time the worker processes used while offering the load (so far reported)."""
        return sum(report.cpu_ns for report in self._reports.values()) / NS_PER_S

    @property
    def live_cpu_seconds(self) -> float:
        """Of :attr:`generator_cpu_seconds`, what making and sending live frames took."""
        return sum(report.frames_cpu_ns for report in self._reports.values()) / NS_PER_S

    @property
    def frames_dropped(self) -> int:
        """Frames lost because the parent did not read for a long time (counted, never hidden)."""
        return 0 if self._merger is None else self._merger.dropped

    def done(self) -> bool:
        self._collect(timeout=0)
        return len(self._reports) == self.spec.workers

    @property
    def pids(self) -> tuple[int, ...]:
        """The generator's worker processes, e.g. to see how busy they are (notebook 08)."""
        return tuple(process.pid for process in self._processes if process.pid is not None)

    def stop(self) -> None:
        """End the run early; what was measured so far is kept."""
        self._stopped = True
        self._board.request_stop()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the run to end, reading what the workers send."""
        deadline = time.monotonic() + timeout
        while not self.done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._collect(timeout=left)

    def result(self, timeout: float | None = None) -> LoadResult:
        """Wait for the end of the run (raises TimeoutError after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"the load run did not finish within {timeout} s")
            self._collect(timeout=left if left is not None else 1.0)
        if self._result is None:
            self._result = self._finish()
        return self._result

    def __del__(self) -> None:
        # A run dropped without its result being read: its workers would block for ever on
        # a pipe nobody reads, so they go with it.
        for process in getattr(self, "_processes", ()):
            if process.is_alive():
                process.terminate()

    # --- collecting -------------------------------------------------------------------------

    def _planned_seconds(self) -> float:
        return self.spec.warmup_seconds + self.spec.duration_seconds

    def longest_seconds(self) -> float:
        """The most a healthy run can take: start-up, the plan, draining answers in flight."""
        return STARTUP_ALLOWANCE_SECONDS + self._planned_seconds() + self.spec.timeout_seconds + 5

    def terminate(self) -> None:
        """Kill the worker processes (for a run that does not end by itself; samples are lost)."""
        for process in self._processes:
            if process.is_alive():
                process.kill()
        if self._calibration_process is not None and self._calibration_process.is_alive():
            self._calibration_process.kill()

    def _collect(self, timeout: float | None) -> None:
        """Read whatever workers (and the calibration) have sent, waiting up to ``timeout``."""
        waiting: list[Connection] = [c for w, c in enumerate(self._channels) if w not in self._reports]
        if self._calibration_channel is not None and self._calibration is None:
            waiting.append(self._calibration_channel)
        if not waiting:
            return
        frame_channels = [self._frame_channels[w] for w in self._open_frame_channels]
        for channel in wait(waiting + frame_channels, timeout):
            if channel is self._calibration_channel:
                self._read_calibration(channel)
            elif channel in frame_channels:
                self._read_frames(self._frame_channels.index(channel))
            else:
                self._read_worker(self._channels.index(channel))  # type: ignore[arg-type]

    def _read_frames(self, worker: int) -> None:
        """Everything waiting in a worker's frame pipe (no blocking: poll before each read)."""
        if worker not in self._open_frame_channels or self._merger is None:
            return
        channel = self._frame_channels[worker]
        try:
            while channel.poll(0):
                self._merger.add(worker, channel.recv_bytes())
        except (EOFError, OSError):
            self._open_frame_channels.discard(worker)  # the worker is gone; its report says the rest

    def _read_calibration(self, channel: Connection) -> None:
        try:
            outcome = channel.recv()
        except EOFError:
            outcome = "calibration process ended without a result"
        if isinstance(outcome, Calibration):
            self._calibration = outcome
        else:
            self._problems.append(str(outcome))
            self._calibration_channel = None
            self._board.barrier.abort()  # the workers must not wait for it

    def _read_worker(self, worker: int) -> None:
        channel = self._channels[worker]
        try:
            report: WorkerReport = channel.recv()
            samples = np.empty(report.rows, dtype=SAMPLE_DTYPE)
            channel.recv_bytes_into(samples.view(np.uint8))  # straight into the array
        except EOFError:
            self._processes[worker].join(1)  # reaped, so that its exit code is known
            exit_code = self._processes[worker].exitcode
            report = WorkerReport(worker, 0, 0, 0, 0, False,
                                  error=f"worker process ended without a result (exit code {exit_code})")
            samples = np.empty(0, dtype=SAMPLE_DTYPE)
        self._reports[worker] = report
        self._parts[worker] = samples
        if self._merger is not None:
            # The pipe holds frames written before the report: they come first.
            self._read_frames(worker)
            self._open_frame_channels.discard(worker)
            self._merger.finish(worker, list(report.frames), report.frames_dropped)
        if report.gave_up is not None:
            if report.gave_up not in self._problems:
                self._problems.append(report.gave_up)
            self._board.request_stop()  # the other workers need not find out one by one
        if report.error is not None:
            self._problems.append(f"worker {worker}: {report.error}")
            # The others may be waiting for this one at the start barrier: let them go.
            self._board.barrier.abort()

    def _finish(self) -> LoadResult:
        for process in self._processes:
            process.join(JOIN_SECONDS)
        if self._calibration_process is not None:
            self._collect(timeout=5)
            self._calibration_process.join(JOIN_SECONDS)
        reports = [r for r in self._reports.values() if r.error is None]
        start = min((r.start_ns for r in reports), default=0)
        end = max((r.end_ns for r in reports), default=start)
        samples = merge([self._parts[w] for w in sorted(self._parts)])
        return LoadResult.of_run(
            self.spec, samples, start_ns_=start, end_ns=end, started_at=wall_clock(start),
            abandoned=sum(r.abandoned for r in reports),
            # Only a stop of this run's owner: workers the run stopped itself (one found the
            # target gone) were not stopped by the user.
            stopped_early=self._stopped,
            calibration=self._calibration, problems=tuple(self._problems),
            tls=merge_counts([r.tls for r in reports if r.tls is not None]),
            generator_hiccups=None if not self.spec.hiccup_meter else merge_series(
                [r.hiccups for r in reports if r.hiccups is not None]))


@overload
def start_load(spec: LoadSpec, *, calibrate: bool = ..., live: bool = ...,
               live_interval_seconds: float = ..., cluster: None = ...) -> LoadRun: ...


@overload
def start_load(spec: LoadSpec, *, calibrate: bool = ..., live: bool = ...,
               live_interval_seconds: float = ..., cluster: Any) -> ClusterRun: ...


def start_load(spec: LoadSpec, *, calibrate: bool = False, live: bool = False,
               live_interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
               cluster: Any = None) -> Run:
    """Start a run in the background and return at once (for notebooks): a :class:`LoadRun`,
    or with ``cluster`` (as for :func:`run_load`) a :class:`~lab.engine.cluster.ClusterRun`;
    both are a :class:`~lab.engine.run.Run`, which answers the same questions.

    ``live``: the workers send a frame per ``live_interval_seconds`` (``run.live_frames()``).
    """
    refuse_when_imported_by_a_new_process("a load")
    tls = plan_for(spec, 0).tls
    if tls is not None:
        check_settings(tls)
    if cluster is not None:
        return _start_on_cluster(spec, cluster, calibrate=calibrate, live=live,
                                 live_interval_seconds=live_interval_seconds)
    return LoadRun(spec, calibrate=calibrate, live=live, live_interval_seconds=live_interval_seconds)


def _start_on_cluster(spec: LoadSpec, cluster: Any, *, calibrate: bool, live: bool = False,
                      live_interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> ClusterRun:
    if calibrate:
        raise ConfigError("--calibrate", "is not available with --cluster")
    from lab.engine.cluster import ClusterRun  # distributed is imported only for a cluster

    return ClusterRun(spec, cluster, live=live, live_interval_seconds=live_interval_seconds)


def run_load(spec: LoadSpec, *, calibrate: bool = False,
             on_progress: Callable[[LoadProgress], None] | None = None,
             progress_interval: float = 1.0, cluster: Any = None) -> LoadResult:
    """Run a load to its end and return the result (blocks; Ctrl-C stops it early and keeps
    what was measured).

    ``cluster``: run the generator on a Dask cluster instead of local processes --
    ``"local:N"``, ``"tcp://HOST:PORT"`` or a ``distributed.Client`` (see
    :mod:`lab.engine.cluster`; ``distributed`` is imported only then).
    """
    run = start_load(spec, calibrate=calibrate, cluster=cluster)
    return follow_to_end(run, on_progress, progress_interval,
                         stop_wait_seconds=STOP_WAIT_SECONDS + spec.timeout_seconds)

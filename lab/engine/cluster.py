"""The load generator on a Dask cluster: one generator per Dask worker, samples merged exactly.

``run_load(spec, cluster="local:2")`` (or ``bench URL --cluster local:2``) starts an embedded
LocalCluster of single-threaded worker processes; ``cluster="tcp://HOST:PORT"`` uses an
existing scheduler, so the same call runs on SSHCluster, Kubernetes or any Dask deployment;
a ``distributed.Client`` may be passed as it is.

Each Dask worker runs the same engine as the local worker processes, inside its task (Dask's
worker processes are daemonic: a task may not start a process of its own). It owns a segment
of the load -- its share of the connections, or of the open-loop rate -- connects, says so
on a cluster-wide queue, and waits on a cluster-wide event: the common start. From there it
keeps its own monotonic clock; no latency ever compares two machines' clocks. Its offset to
the client's clock, measured by round trips before the run, only moves its samples onto the
client's timeline.

Every raw sample comes back (zlib-compressed), tagged with its worker, and the one run
summary is computed from all of them -- never an average of percentiles. A worker that is
lost mid-run costs its samples and is counted as a ``worker_lost`` error; the run still ends
with a result.

Nothing here is imported unless a cluster is asked for: ``distributed`` is optional.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import signal
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lab.engine.core import Engine
from lab.engine.live import DEFAULT_INTERVAL_SECONDS, FrameMerger, FrameMeter, interval_ns
from lab.engine.progress import LoadProgress
from lab.engine.result import LoadResult, wall_clock
from lab.engine.run import Run
from lab.engine.secure import merge_counts
from lab.engine.spec import LoadSpec
from lab.engine.worker import LoopWatch, engine_for
from lab.errors import ConfigError, LoadError
from lab.measure.frames import Frame
from lab.measure.samples import CLOCK_COLUMNS, MISSING, SAMPLE_DTYPE, ErrorKind, empty, merge
from lab.resources import merge_series
from lab.units import NS_PER_S

if TYPE_CHECKING:
    from distributed import Client

START_MARGIN_NS = 100_000_000  # from the event to the first send: time for every worker to wake
READY_TIMEOUT_SECONDS = 60.0
GATHER_MARGIN_SECONDS = 30.0  # after the plan and the request timeout: sending samples back
CLOCK_PROBES = 5
SCHEDULER_TIMEOUT_SECONDS = 5.0
GATHER_POLL_SECONDS = 0.1
READY_POLL_SECONDS = 0.02
PROGRESS_SECONDS = 0.5  # how often each worker reports its counts
STOP_POLL_SECONDS = 0.2  # how often each worker asks whether its owner stopped the run


@dataclass(frozen=True)
class Segment:
    """One Dask worker's part of the run."""

    index: int
    address: str
    clock_offset_ns: int  # client clock minus this worker's clock, measured by round trips


def parse_cluster(text: str) -> str:
    """Check a ``--cluster`` value: ``local:N`` or ``tcp://HOST:PORT``."""
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or not 1 <= int(count) <= 64:
            raise ConfigError("cluster", f"{text!r}: local:N takes N from 1 to 64")
        return text
    host, _, port = text.split("://", 1)[-1].rpartition(":")
    if text.startswith(("tcp://", "tls://")) and host and port.isdigit() and 0 < int(port) < 65536:
        return text
    raise ConfigError("cluster", f"{text!r}: use local:N (an embedded cluster of N worker "
                      "processes) or tcp://HOST:PORT (an existing Dask scheduler)")


def connect(cluster: str | Client) -> tuple[Client, Any]:
    """A client for ``cluster``, and the LocalCluster it started (None for an existing one)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("cluster", "needs Dask's distributed package: "
                          "pip install distributed") from None
    if not isinstance(cluster, str):
        return cluster, None
    cluster = parse_cluster(cluster)
    if cluster.startswith("local:"):
        with _workers_deaf_to_ctrl_c():
            local = LocalCluster(n_workers=int(cluster.removeprefix("local:")), threads_per_worker=1,
                                 processes=True, dashboard_address=None, silence_logs=logging.ERROR)
        return Client(local), local
    try:
        return Client(cluster, timeout=SCHEDULER_TIMEOUT_SECONDS), None
    except (OSError, TimeoutError) as error:
        raise ConfigError("cluster", f"cannot reach the Dask scheduler at {cluster}: {error}") from None


@contextlib.contextmanager
def _workers_deaf_to_ctrl_c() -> Iterator[None]:
    """Start an embedded cluster's worker processes with SIGINT ignored (they inherit it).

    A terminal's Ctrl-C goes to the whole process group: without this the Dask workers would
    die with their samples, instead of hearing the run's stop and sending what they measured.
    Only the main thread may change a signal's handler; elsewhere the workers start as usual.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_on_cluster(spec: LoadSpec, cluster: str | Client) -> LoadResult:
    """Run ``spec`` split across the cluster's workers and wait for it; the result merges
    every sample. (:class:`ClusterRun` is the same run in the background.)"""
    return ClusterRun(spec, cluster).result()


def _run(spec: LoadSpec, client: Client, on_progress: Callable[[LoadProgress], None],
         live: LiveListener | None, stop: threading.Event, submitted: list[Any]) -> LoadResult:
    """The whole run, in the run's thread; ``submitted`` gets the workers' tasks as they go."""
    from distributed import Event, Queue

    addresses = sorted(client.scheduler_info()["workers"])
    if not addresses:
        raise LoadError("the Dask cluster has no workers")
    if len(addresses) > spec.connections:
        raise ConfigError("connections", f"{len(addresses)} cluster workers need at least as many "
                          f"connections (got {spec.connections})")
    segments = [Segment(index, address, _clock_offset(client, address))
                for index, address in enumerate(addresses)]
    name = f"lab-load-{uuid.uuid4().hex}"
    ready, start = Queue(f"{name}-ready", client=client), Event(f"{name}-start", client=client)
    shared = spec.replace(workers=len(segments))
    interval_ns = None if live is None else live.interval_ns
    futures = [client.submit(run_segment, shared, segment.index, name, interval_ns,
                             key=f"{name}-{segment.index}", workers=[segment.address],
                             allow_other_workers=False, pure=False)
               for segment in segments]
    submitted.extend(futures)
    _await_ready(ready, len(segments), futures)
    start_ns = perf_counter_ns() + START_MARGIN_NS
    start.set()
    if live is not None:
        live.started(start_ns, len(segments))
    tally = _Tally(spec, Queue(f"{name}-progress", client=client), on_progress, live,
                   stop, Event(f"{name}-stop", client=client))
    outcomes = _gather(client, futures, segments, spec, tally)
    tally.poll()  # what the workers put on the queue before they returned
    if live is not None:
        for index, outcome in enumerate(outcomes):
            rest = [] if outcome is None else outcome["frames"]
            live.finish(index, rest, 0 if outcome is None else outcome["frames_dropped"])
    return _merge(shared, segments, outcomes, start_ns, str(client.scheduler_info()["address"]),
                  stopped_early=stop.is_set())


def _clock_offset(client: Client, address: str) -> int:
    """Client clock minus the worker's, from the round trip with the least delay."""
    best_rtt, best_offset = None, 0
    for _ in range(CLOCK_PROBES):
        sent = perf_counter_ns()
        remote = client.submit(perf_counter_ns, workers=[address], allow_other_workers=False,
                               pure=False).result()
        received = perf_counter_ns()
        if best_rtt is None or received - sent < best_rtt:
            best_rtt, best_offset = received - sent, (sent + received) // 2 - remote
    return best_offset


def _await_ready(ready: Any, count: int, futures: list[Any]) -> None:
    """Wait until every worker has connected (or one has failed, which ends the wait).

    The queue's size is polled: a get() that times out is logged as an error by the
    scheduler, which would print tracebacks at users for a normal wait.
    """
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while ready.qsize() < count:
        if any(future.status in ("error", "cancelled", "lost") for future in futures):
            return  # the gather reports it; the others go on without it
        if time.monotonic() > deadline:
            raise LoadError(f"{count - ready.qsize()} cluster workers did not connect within "
                            f"{READY_TIMEOUT_SECONDS:g} s")
        time.sleep(READY_POLL_SECONDS)


class LiveListener(Protocol):
    """What takes a cluster run's live frames (lab.engine.live.FrameMerger's side)."""

    interval_ns: int

    def started(self, start_ns: int, workers: int) -> None: ...
    def add(self, worker: int, data: bytes) -> None: ...
    def finish(self, worker: int, rest: list[bytes], dropped: int) -> None: ...


class _Tally:
    """What the workers put on the run's queue: their latest counts, summed into the run's
    progress, and their live frames, handed to the listener. It also passes the owner's stop
    on to the workers."""

    def __init__(self, spec: LoadSpec, queue: Any, on_progress: Callable[[LoadProgress], None],
                 live: LiveListener | None, stop: threading.Event, stop_event: Any) -> None:
        self.spec, self.queue, self.on_progress, self.live = spec, queue, on_progress, live
        self.stop, self.stop_event, self.stop_sent = stop, stop_event, False
        self.began = time.monotonic()
        self.latest: dict[int, tuple[int, int]] = {}

    def poll(self) -> None:
        if self.stop.is_set() and not self.stop_sent:
            self.stop_event.set()  # the workers look at it every STOP_POLL_SECONDS
            self.stop_sent = True
        items = self.queue.get(batch=True)  # at once, empty when nothing came
        if not items:
            return
        for kind, index, *content in items:
            if kind == "frame" and self.live is not None:
                self.live.add(index, content[0])
            elif kind == "counts":
                self.latest[index] = (content[0], content[1])
        self.on_progress(self._progress())

    def _progress(self) -> LoadProgress:
        """The same progress a local run reports, against the run's planned length."""
        requests = sum(requests for requests, _ in self.latest.values())
        errors = sum(errors for _, errors in self.latest.values())
        elapsed = time.monotonic() - self.began
        left = max(self.spec.warmup_seconds + self.spec.duration_seconds - elapsed, 0.0)
        phase = "running" if left > 0 and not self.stop.is_set() else "draining"  # as a local run
        return LoadProgress(phase, requests, errors, elapsed,
                            requests / elapsed if elapsed > 0 else 0.0, left)


def _gather(client: Client, futures: list[Any], segments: list[Segment],
            spec: LoadSpec, tally: _Tally) -> list[dict[str, Any] | None]:
    """Each worker's outcome, or None for a worker that failed or left the cluster.

    Polled rather than awaited: a task pinned to a worker that died would wait for that
    worker for ever, and the run must end with what the others measured.
    """
    deadline = (time.monotonic() + spec.warmup_seconds + spec.duration_seconds + spec.timeout_seconds
                + GATHER_MARGIN_SECONDS)
    outcomes: list[dict[str, Any] | None] = [None] * len(futures)
    pending = set(range(len(futures)))
    while pending and time.monotonic() < deadline:
        alive = set(client.scheduler_info()["workers"])
        for index in sorted(pending):
            future = futures[index]
            if future.status == "finished":
                outcomes[index] = future.result()
            elif future.status in ("error", "cancelled", "lost") or segments[index].address not in alive:
                future.cancel()
            else:
                continue
            pending.discard(index)
        if pending:
            tally.poll()
            time.sleep(GATHER_POLL_SECONDS)
    for index in pending:
        futures[index].cancel()
    return outcomes


class _QueueSender:
    """A worker's way onto the run's queue: each put is a round trip to the scheduler, so it
    is made by one thread of its own (in order, and never on the engine's loop)."""

    def __init__(self, queue: Any, index: int) -> None:
        self.queue, self.index = queue, index
        self.thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def counts(self, requests: int, errors: int) -> None:
        self.thread.submit(self.queue.put, ("counts", self.index, requests, errors))

    def send_bytes(self, buf: bytes) -> None:  # a FrameSink: the live frames go the same way
        self.thread.submit(self.queue.put, ("frame", self.index, bytes(buf)))

    def close(self) -> None:
        self.thread.shutdown(wait=True)  # everything put before the task returns


def run_segment(spec: LoadSpec, index: int, name: str, live_interval_ns: int | None = None) -> dict[str, Any]:
    """Inside a Dask task: connect, report ready, wait for the common start, run, send back."""
    import uvloop
    from distributed import Event, Queue

    engine = engine_for(spec, index)
    watch = LoopWatch(spec, index)
    meters: list[FrameMeter] = []
    stopped = threading.Event()  # the owner asked the run to stop (ClusterRun.stop)
    running = threading.Event()

    def watch_for_stop(event: Any) -> None:
        # Asking the scheduler is a round trip: a thread of its own, never the engine's loop.
        while running.is_set() and not stopped.is_set():
            try:
                if event.is_set():
                    stopped.set()
            except Exception:  # the worker is shutting down (its client is gone): so is the run
                stopped.set()
            time.sleep(STOP_POLL_SECONDS)

    async def run() -> int:
        await engine.connect()
        Queue(f"{name}-ready").put(index)
        loop = asyncio.get_running_loop()
        # The wait blocks; run it off the loop so that open connections are still served.
        await loop.run_in_executor(None, Event(f"{name}-start").wait)
        start_ns = perf_counter_ns() + START_MARGIN_NS
        last_report = [0]
        if live_interval_ns is not None:
            meters.append(FrameMeter(engine.recorder, sender, start_ns=start_ns,
                                     interval_ns=live_interval_ns))

        def report(current: Engine) -> None:
            now = perf_counter_ns()
            for meter in meters:
                meter.look(now)
            if now - last_report[0] >= PROGRESS_SECONDS * NS_PER_S:
                last_report[0] = now
                sender.counts(current.recorder.count, current.errors)

        watch.start(loop, start_ns)
        try:
            await engine.run(start_ns, should_stop=stopped.is_set, on_housekeeping=report)
        finally:
            hiccups.append(watch.stop())
        return start_ns

    hiccups: list[np.ndarray | None] = []
    sender = _QueueSender(Queue(f"{name}-progress"), index)
    running.set()
    watcher = threading.Thread(target=watch_for_stop, args=(Event(f"{name}-stop"),), daemon=True)
    watcher.start()
    try:
        start_ns = uvloop.run(run())
    finally:
        running.clear()
        sender.close()
        watcher.join()
    samples = engine.recorder.samples(index)
    return {"start_ns": start_ns, "end_ns": engine.end_ns, "abandoned": engine.abandoned,
            "gave_up": engine.gave_up, "tls": None if engine.tls is None else engine.tls.counts(),
            "rows": len(samples), "samples": zlib.compress(samples.tobytes(), 1),
            "frames": [] if not meters else meters[0].rest(),
            "frames_dropped": 0 if not meters else meters[0].dropped,
            "hiccups": hiccups[0] if hiccups else None}


def _merge(spec: LoadSpec, segments: list[Segment], outcomes: list[dict[str, Any] | None],
           start_ns: int, address: str, *, stopped_early: bool = False) -> LoadResult:
    parts, starts, ends = [], [start_ns], [start_ns]
    hiccups: list[np.ndarray] = []
    for segment, outcome in zip(segments, outcomes, strict=True):
        if outcome is None:
            parts.append(_lost_row(segment.index, start_ns))
            continue
        samples = np.frombuffer(zlib.decompress(outcome["samples"]), dtype=SAMPLE_DTYPE).copy()
        _shift(samples, segment.clock_offset_ns)
        parts.append(samples)
        if outcome.get("hiccups") is not None:
            series = outcome["hiccups"].copy()
            series["at_ns"] += segment.clock_offset_ns  # onto the client's clock, as the samples
            hiccups.append(series)
        starts.append(outcome["start_ns"] + segment.clock_offset_ns)
        ends.append(outcome["end_ns"] + segment.clock_offset_ns)
    # A worker starts after the client's start time, but its clock offset is only known to
    # within half a round trip: moved onto the client's clock, its first requests can land a
    # little before that time. The run began when the earliest worker did, or the result would
    # drop those requests (which the worker's live frames count).
    start_ns = min(starts)
    lost = sum(outcome is None for outcome in outcomes)
    # Why a worker's engine ended the run itself (the target went away), once per reason.
    gave_up = dict.fromkeys(outcome["gave_up"] for outcome in outcomes
                            if outcome is not None and outcome.get("gave_up"))
    problems = ((f"{lost} cluster worker(s) lost during the run",) if lost else ()) + tuple(gave_up)
    result = LoadResult.of_run(
        spec, merge(parts), start_ns_=start_ns, end_ns=max(ends),
        started_at=wall_clock(start_ns), problems=problems,
        abandoned=sum(outcome["abandoned"] for outcome in outcomes if outcome is not None),
        stopped_early=stopped_early,
        tls=merge_counts([outcome["tls"] for outcome in outcomes
                          if outcome is not None and outcome.get("tls") is not None]),
        generator_hiccups=merge_series(hiccups) if spec.hiccup_meter else None)
    # Each worker's share of the measured requests (a lost worker's is its worker_lost row),
    # so the shares add up to `requests`.
    counts = np.bincount(result.measured_samples()["worker"], minlength=len(segments))
    per_worker = [{"worker": segment.address, "requests": int(counts[segment.index]),
                   "lost": outcome is None, "clock_offset_ns": segment.clock_offset_ns}
                  for segment, outcome in zip(segments, outcomes, strict=True)]
    cluster = {"address": address, "per_worker": per_worker}
    return dataclasses.replace(result, outcome=dataclasses.replace(result.outcome, cluster=cluster))


def _shift(samples: np.ndarray, offset_ns: int) -> None:
    """Move a worker's times onto the client's clock (MISSING stays MISSING)."""
    for column in CLOCK_COLUMNS:
        values = samples[column]
        values[values != MISSING] += offset_ns


def _lost_row(index: int, start_ns: int) -> np.ndarray:
    """One sample that says a worker was lost: counted as a ``worker_lost`` error."""
    row = empty(1)
    row["sent_ns"] = row["done_ns"] = start_ns
    row["error"] = ErrorKind.WORKER_LOST
    row["worker"] = index
    return row


class ClusterRun(Run):
    """A run on a Dask cluster in the background (``start_load(spec, cluster=..., live=True)``):
    a :class:`~lab.engine.run.Run` like a local one -- ``progress()``, ``live_frames()``,
    ``live_totals``, ``stop()``, ``join()``, ``result()`` and ``await run.wait()``.

    The cluster run itself goes on in a thread of this process (it mostly waits on Dask);
    the frames come from the workers through the run's queue and are merged here by histogram,
    exactly as a local run's are.
    """

    def __init__(self, spec: LoadSpec, cluster: str | Client, *, live: bool = False,
                 live_interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self.spec = spec
        self.interval_ns = interval_ns(live_interval_seconds)  # checked before connecting
        self.live_interval_s = live_interval_seconds if live else None
        self._start_ns: int | None = None
        self._submitted: list[Any] = []  # the workers' tasks, once the run's thread made them
        self._merger: FrameMerger | None = None
        self._lock = threading.Lock()
        self._progress: LoadProgress | None = None
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        # Its own flag, not Thread.is_alive(): a join() interrupted by Ctrl-C marks a thread
        # as stopped while it still runs (CPython before 3.13).
        self._finished = threading.Event()
        # Connected here, in the caller's thread: a scheduler that cannot be reached is the
        # caller's error at once, and an embedded cluster's workers are started where Ctrl-C
        # can be kept from them (see connect).
        self._client, self._local = connect(cluster)
        self._thread = threading.Thread(target=self._main, daemon=True, name="lab-cluster-run")
        self._thread.start()

    def _main(self) -> None:
        try:
            self._result = _run(self.spec, self._client, self._heard,
                                self if self.live_interval_s is not None else None, self._stop,
                                self._submitted)
        except BaseException as error:  # handed to whoever asks for the result
            self._error = error
        finally:
            if self._local is not None:
                self._client.close()
                self._local.close()
            self._finished.set()

    def _heard(self, progress: LoadProgress) -> None:
        self._progress = progress

    # --- the LiveListener side (called from the run's thread) ---------------------------

    def started(self, start_ns: int, workers: int) -> None:
        with self._lock:
            self._merger = FrameMerger(workers)
        self._start_ns = start_ns

    def add(self, worker: int, data: bytes) -> None:
        with self._lock:
            if self._merger is not None:
                self._merger.add(worker, data)

    def finish(self, worker: int, rest: list[bytes], dropped: int) -> None:
        with self._lock:
            if self._merger is not None:
                self._merger.finish(worker, rest, dropped)

    # --- what a notebook asks ------------------------------------------------------------

    @property
    def start_ns(self) -> int | None:
        """The run's common start on this machine's clock (the workers' samples are moved
        onto it); None before the workers were told to start."""
        return self._start_ns

    def live_frames(self) -> list[Frame]:
        """Merged frames of the intervals every worker has closed, not handed out yet."""
        with self._lock:
            return [] if self._merger is None else self._merger.ready()

    @property
    def live_totals(self) -> Frame | None:
        with self._lock:
            return None if self._merger is None else self._merger.totals

    @property
    def frames_dropped(self) -> int:
        with self._lock:
            return 0 if self._merger is None else self._merger.dropped

    def done(self) -> bool:
        return self._finished.is_set()

    def stop(self) -> None:
        """End the run early; what was measured is kept (``result().stopped_early``)."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the run to end (Ctrl-C still reaches the caller)."""
        self._finished.wait(timeout)

    def longest_seconds(self) -> float:
        """Every worker connecting, the plan, the request timeout, the samples coming back."""
        spec = self.spec
        return (READY_TIMEOUT_SECONDS + spec.warmup_seconds + spec.duration_seconds
                + spec.timeout_seconds + GATHER_MARGIN_SECONDS)

    def terminate(self) -> None:
        """Stop the run and cancel its tasks: the workers' samples are lost, the run ends with
        each counted as a lost worker."""
        self._stop.set()
        with contextlib.suppress(Exception):  # a client already closed has nothing to cancel
            self._client.cancel(list(self._submitted))

    def progress(self) -> LoadProgress:
        if self.done() and self._result is not None:
            return LoadProgress.done(self._result.summary)
        if self._progress is None:
            return LoadProgress("starting", 0, 0, 0.0, 0.0,
                                self.spec.warmup_seconds + self.spec.duration_seconds)
        return self._progress

    def result(self, timeout: float | None = None) -> LoadResult:
        if not self._finished.wait(timeout):
            raise TimeoutError("the cluster run has not ended yet")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

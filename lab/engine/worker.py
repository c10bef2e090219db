"""One generator process: runs an :class:`~lab.engine.core.Engine` on its own uvloop.

The parent (``lab.loadgen``) starts one of these per worker. They share a small block of
memory (:class:`SharedBoard`): a common start time, a stop flag, and per-worker counters the
parent reads for progress. Samples go back once, at the end, through a pipe. With live
frames asked for, a second pipe carries a small summary of each 100 ms (lab.engine.live).

This module lives in the package (not in ``__main__`` or a notebook cell) because worker
processes are started with ``spawn``/``forkserver`` and must be able to import it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from time import perf_counter_ns
from typing import Any

import numpy as np
import uvloop

from lab.engine.core import Engine, make_engine
from lab.engine.http_lane import HttpLane
from lab.engine.lane import Lane
from lab.engine.live import FrameMeter
from lab.engine.plan import EnginePlan, RetryPolicy, TlsPlan, WebSocketPlan
from lab.engine.spec import (
    LoadSpec,
    build_request,
    message_payload,
    retry_kinds,
    worker_connections,
    worker_max_requests,
)
from lab.engine.websocket import WebSocketLane
from lab.resources import HiccupMeter, ProcessContext, raise_open_file_limit
from lab.units import NS_PER_MS, NS_PER_S

START_MARGIN_NS = 50_000_000  # between agreeing on a start time and starting: time to get ready
BARRIER_TIMEOUT_SECONDS = 60.0


# Layout of the shared board: [start_ns, stop flag, then per worker: completed, errors]
_HEADER = 2
_PER_WORKER = 2


class SharedBoard:
    """Lock-free shared counters: each worker writes only its own slots, the parent reads."""

    def __init__(self, context: ProcessContext, workers: int, *, extra_parties: int = 0) -> None:
        self.workers = workers
        self.values = context.RawArray("q", _HEADER + _PER_WORKER * workers)
        self.start_lock = context.Lock()
        # extra_parties: a calibration process that must finish before the load starts.
        self.barrier = context.Barrier(workers + extra_parties, timeout=BARRIER_TIMEOUT_SECONDS)

    # parent side
    def request_stop(self) -> None:
        self.values[1] = 1

    def start_ns(self) -> int:
        return int(self.values[0])

    def totals(self) -> tuple[int, int]:
        """(requests completed, errors) over all workers so far."""
        completed = sum(self.values[_HEADER + _PER_WORKER * w] for w in range(self.workers))
        errors = sum(self.values[_HEADER + _PER_WORKER * w + 1] for w in range(self.workers))
        return int(completed), int(errors)

    # worker side
    def stop_requested(self) -> bool:
        return bool(self.values[1])

    def publish(self, worker: int, *, completed: int, errors: int) -> None:
        base = _HEADER + _PER_WORKER * worker
        self.values[base] = completed
        self.values[base + 1] = errors

    def agree_on_start(self) -> int:
        """Every worker waits for the others, then all use one start time (CLOCK_MONOTONIC is
        shared by the processes of one machine, so perf_counter_ns values compare)."""
        self.barrier.wait()
        with self.start_lock:
            if self.values[0] == 0:
                self.values[0] = perf_counter_ns() + START_MARGIN_NS
            return int(self.values[0])


@dataclass(frozen=True)
class WorkerReport:
    """What a worker sends back besides its samples."""

    worker: int
    start_ns: int
    end_ns: int
    abandoned: int
    connect_failures: int
    stopped_by_owner: bool
    error: str | None = None
    rows: int = 0  # samples that follow, as raw SAMPLE_DTYPE bytes
    gave_up: str | None = None  # the engine ended the run itself (nothing listening), and why
    frames: tuple[bytes, ...] = ()  # live frames not sent yet (the intervals still open at the end)
    frames_dropped: int = 0  # live frames the pipe had no room for (a parent not reading)
    cpu_ns: int = 0  # CPU time this process used while offering the load (user + system)
    frames_cpu_ns: int = 0  # of which making and sending live frames
    tls: dict[str, Any] | None = None  # https://, wss://: what the handshakes negotiated (TlsClient.counts)
    hiccups: np.ndarray | None = None  # hiccup_meter: this loop's series (lab.resources.HICCUP_FIELDS)


def plan_for(spec: LoadSpec, worker: int) -> EnginePlan:
    """This worker's share: connections and request budget split, the rate split with phase
    offsets so that the merged schedule of all workers is evenly spaced. With rate stages the
    engine takes every ``workers``-th request of the one schedule instead (lab.engine.stages)."""
    rate = None
    offset_ns = 0
    if spec.mode == "open" and not spec.stages:
        assert spec.rate is not None
        rate = spec.rate / spec.workers
        offset_ns = round(worker * NS_PER_S / spec.rate)
    target = spec.target
    websocket = None
    if target.websocket:
        websocket = WebSocketPlan(uri=spec.url, payload=message_payload(spec),
                                  text=spec.message_type == "text", compression=spec.ws_compression,
                                  max_message_bytes=spec.max_message_bytes)
    tls = None
    if target.tls:
        tls = TlsPlan(server_hostname=target.host, insecure=spec.insecure, ca_file=spec.ca_file,
                      resume=spec.tls_resume)
    return EnginePlan(
        host=target.host, port=target.port, tls=tls,
        # A WebSocket lane builds its frame per connection (the mask is the connection's).
        requests=() if websocket else tuple(build_request(spec, path) for path in spec.request_paths),
        websocket=websocket,
        method=spec.method, mode=spec.mode, connections=worker_connections(spec, worker),
        rate=rate, offset_ns=offset_ns, stages=spec.stage_plan, worker=worker, workers=spec.workers,
        duration_ns=round((spec.warmup_seconds + spec.duration_seconds) * NS_PER_S),
        max_requests=worker_max_requests(spec, worker),
        timeout_ns=round(spec.timeout_seconds * NS_PER_S), keepalive=spec.keepalive,
        connect_before=spec.connect == "before", think_ns=round(spec.think_ms * NS_PER_MS),
        retry=retry_policy(spec))


def retry_policy(spec: LoadSpec) -> RetryPolicy | None:
    """The spec's retries and deadline as the engine follows them; None when it asks for neither."""
    if not spec.retries and spec.deadline_seconds is None:
        return None
    return RetryPolicy.of(
        spec.retries, retry_kinds(spec.retry_on), spec.backoff, round(spec.backoff_ms * NS_PER_MS),
        spec.retry_budget_percent,
        None if spec.deadline_seconds is None else round(spec.deadline_seconds * NS_PER_S))


def lane_type_for(plan: EnginePlan) -> type[Lane]:
    """The lanes that carry the plan's requests: messages on WebSockets, or HTTP requests."""
    return HttpLane if plan.websocket is None else WebSocketLane


def engine_for(spec: LoadSpec, worker: int) -> Engine:
    """The engine of one generator process, local or on a Dask worker: the same either way."""
    plan = plan_for(spec, worker)
    return make_engine(plan, lane_type_for(plan))


class LoopWatch:
    """What a generator worker's loop does beside the load, as the spec asks: its hiccup meter
    (``hiccup_meter``) and its injected pauses (``pause_every_seconds``, ``pause_ms``).

    Neither touches the engine: with both off, nothing is scheduled on the loop at all.
    """

    def __init__(self, spec: LoadSpec, worker: int) -> None:
        self.meter = HiccupMeter(worker=worker) if spec.hiccup_meter else None
        self._pause_every_ns = (None if spec.pause_every_seconds is None
                                else round(spec.pause_every_seconds * NS_PER_S))
        self._pause_s = spec.pause_ms * NS_PER_MS / NS_PER_S
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pause_timer: asyncio.TimerHandle | None = None
        self._start_ns = 0

    def start(self, loop: asyncio.AbstractEventLoop, start_ns: int) -> None:
        """From the loop's thread, once the load's start time (``start_ns``) is agreed."""
        self._loop, self._start_ns = loop, start_ns
        if self.meter is not None:
            self.meter.start(loop)
        if self._pause_every_ns is not None:
            first_ns = start_ns + self._pause_every_ns - perf_counter_ns()
            self._pause_timer = loop.call_later(max(first_ns, 0) / NS_PER_S, self._pause)

    def _pause(self) -> None:
        # A blocking sleep, as the server's stall injector does: the whole loop stops, as it
        # would for a collection or a process not scheduled.
        time.sleep(self._pause_s)
        assert self._loop is not None and self._pause_every_ns is not None
        self._pause_timer = self._loop.call_later(self._pause_every_ns / NS_PER_S, self._pause)

    def stop(self) -> np.ndarray | None:
        """Stop both; the meter's series from the load's start (None without a meter)."""
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        if self.meter is None:
            return None
        self.meter.stop()
        return self.meter.series(self._start_ns)


@dataclass(frozen=True)
class LiveFrames:
    """Where and how often a worker sends live frames."""

    channel: Connection
    interval_ns: int


def worker_main(spec: LoadSpec, worker: int, board: SharedBoard, channel: Connection,
                live: LiveFrames | None = None) -> None:
    """Process entry point: connect, wait for the others, run, send samples back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the parent, which stops us
    raise_open_file_limit()
    try:
        engine = engine_for(spec, worker)
        # Almost nothing on the hot path makes reference cycles; a collection pass in the
        # middle of a run would only add pauses to the measured latencies.
        gc.disable()
        report = uvloop.run(_run(engine, worker, board, live, LoopWatch(spec, worker)))
    except BaseException as error:  # report anything, never leave the parent waiting
        channel.send(WorkerReport(worker, 0, 0, 0, 0, False, error=f"{type(error).__name__}: {error}"))
        channel.send_bytes(b"")
        channel.close()
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        return
    samples = engine.recorder.samples(worker)
    board.publish(worker, completed=len(samples), errors=engine.errors)
    channel.send(dataclasses.replace(report, rows=len(samples)))
    channel.send_bytes(samples.view(np.uint8).data)  # the array's own memory: no copy
    channel.close()


async def _run(engine: Engine, worker: int, board: SharedBoard,
               live: LiveFrames | None, watch: LoopWatch) -> WorkerReport:
    connect_failures = await engine.connect()
    loop = asyncio.get_running_loop()
    # The barrier blocks; run it off the loop so that open connections are still served.
    start_ns = await loop.run_in_executor(None, board.agree_on_start)
    meter = None if live is None else FrameMeter(engine.recorder, live.channel, start_ns=start_ns,
                                                 interval_ns=live.interval_ns)

    def publish(running: Engine) -> None:
        board.publish(worker, completed=running.recorder.count, errors=running.errors)
        if meter is not None:
            meter.look(perf_counter_ns())

    cpu_before = time.process_time_ns()
    watch.start(loop, start_ns)
    try:
        await engine.run(start_ns, should_stop=board.stop_requested, on_housekeeping=publish)
    finally:
        hiccups = watch.stop()
    cpu_ns = time.process_time_ns() - cpu_before
    return WorkerReport(worker=worker, start_ns=start_ns, end_ns=engine.end_ns,
                        abandoned=engine.abandoned, connect_failures=connect_failures,
                        stopped_by_owner=engine.stopped_by_owner, gave_up=engine.gave_up,
                        frames=() if meter is None else tuple(meter.rest()),
                        frames_dropped=0 if meter is None else meter.dropped, cpu_ns=cpu_ns,
                        frames_cpu_ns=0 if meter is None else meter.cpu_ns,
                        tls=None if engine.tls is None else engine.tls.counts(), hiccups=hiccups)


def start_workers(spec: LoadSpec, context: ProcessContext, board: SharedBoard, *,
                  frame_interval_ns: int | None = None,
                  ) -> tuple[list[Any], list[Connection], list[Connection]]:
    """Start one process per worker; returns the processes, their result pipes and (with
    ``frame_interval_ns``) their live-frame pipes."""
    processes = []
    channels = []
    frame_channels = []
    for worker in range(spec.workers):
        receiver, sender = context.Pipe(duplex=False)
        live = None
        if frame_interval_ns is not None:
            frame_receiver, frame_sender = context.Pipe(duplex=False)
            live = LiveFrames(frame_sender, frame_interval_ns)
            frame_channels.append(frame_receiver)
        process = context.Process(target=worker_main, args=(spec, worker, board, sender, live),
                                  name=f"loadgen-worker-{worker}", daemon=True)
        process.start()
        sender.close()  # the child holds its own copy; EOF then means the child is gone
        if live is not None:
            live.channel.close()
        processes.append(process)
        channels.append(receiver)
    return processes, channels, frame_channels

"""The event-loop side of one generator process: connections, the two load models, timing.

Every connection is a :class:`Lane`: it sends one request, reads its answer (llhttp, or
:class:`~lab.engine.response.RepeatedResponse` for an answer seen before), records one row
and asks its engine what to do next. :class:`ClosedLoop` sends the next request at once on
the same lane (wrk's model); :class:`OpenLoop` sends requests at their intended times on
whichever lane is free, and a request finding no free lane waits in a queue, timed from its
intended time (wrk2's model).

The hot path runs inside the protocol's ``data_received`` callback: no task, no future and
no timer per request; one ``perf_counter_ns`` per received chunk and one per send. In the
closed loop the next request is written from that same callback.

One request, one final answer (RFC 9110 section 15.2): interim 1xx answers (100 Continue,
103 Early Hints) are read past, and a second response starting after the final one, in the
same read, is not an answer to anything -- the request is counted ``malformed``.
"""

from __future__ import annotations

import asyncio
import collections
import random
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns

from lab.engine.recorder import ROW, Recorder
from lab.engine.response import (
    HttpParserError,
    RepeatedResponse,
    ResponseParser,
    body_ends_at_close,
    response_parser,
)
from lab.engine.stages import Schedule, Stage
from lab.engine.timer import CoarseTimer, TimerfdTimer, precise_timer
from lab.measure.samples import MISSING, ErrorKind
from lab.units import NS_PER_S

HOUSEKEEPING_SECONDS = 0.05  # how often timeouts, the stop flag and progress are looked at
CONNECT_RETRY_SECONDS = 0.01  # a closed-loop lane waits this long after a failed connect
STOP_GRACE_NS = NS_PER_S // 2  # after stop(), answers still in flight get this long
# A target that refuses every connection tried over this long, after it had accepted some,
# has gone away. A server re-creating its listener for a knob change is back within
# milliseconds in a thread; in processes its new workers take a few hundred (spawn, imports),
# more on a machine the load keeps busy.
GONE_AFTER_NS = 3 * NS_PER_S

# Reused keep-alive connections may be closed by the server just as a request goes out
# (RFC 9112 section 9.3.1 lets a client retry an idempotent request in that case).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
BAD_STATUS = int(ErrorKind.BAD_STATUS)


@dataclass(frozen=True, kw_only=True)
class WebSocketPlan:
    """What a WebSocket run sends: one message, again and again, on upgraded connections."""

    uri: str  # ws://host:port/path, for the handshake's Host and request target
    payload: bytes
    text: bool  # a text frame (else binary)
    compression: bool  # offer permessage-deflate


@dataclass(frozen=True, kw_only=True)
class EnginePlan:
    """What one generator process does: its share of the load, and where to send it."""

    host: str
    port: int
    requests: tuple[bytes, ...]  # pre-built request bytes, taken in turn
    method: str
    mode: str  # "closed" or "open"
    connections: int
    rate: float | None  # this process's share of the open-loop rate
    offset_ns: int  # open loop: this process's schedule starts this much after the run start
    duration_ns: int  # warm-up included
    max_requests: int | None
    timeout_ns: int
    keepalive: bool
    think_ns: int = 0  # closed loop: mean pause between an answer and the next request
    websocket: WebSocketPlan | None = None  # set: each request is a message on a WebSocket
    # open loop in stages (lab.engine.stages): this worker sends every ``workers``-th request
    # of the one schedule, starting with request ``worker``
    stages: tuple[Stage, ...] = ()
    worker: int = 0
    workers: int = 1


class _Wire(asyncio.Protocol):
    """One TCP connection; it forwards its events to the lane that owns it."""

    __slots__ = ("data_received", "lane", "transport")

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.transport: asyncio.Transport | None = None
        # One call less per chunk on the hot path: the lane's method is the protocol's.
        self.data_received = lane.on_data  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lane.on_lost(self, exc)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows


class Lane:
    """A connection slot that carries one request at a time, reconnecting when needed."""

    __slots__ = (
        "_connecting",
        "begun_ns",
        "busy",
        "complete",
        "connect_ns",
        "engine",
        "first_byte_ns",
        "first_chunk",
        "intended_ns",
        "keep_alive",
        "parser",
        "received",
        "repeat",
        "request",
        "reused",
        "rows",
        "sent_ns",
        "status",
        "transport",
        "wire",
    )

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.rows = engine.recorder.rows  # shared; appended to in place
        # With one path every request is the same bytes object: no lookup per request.
        self.request: bytes | None = engine.requests[0] if engine.request_count == 1 else None
        self.parser: ResponseParser | None = None
        self.repeat: RepeatedResponse | None = None
        self.wire: _Wire | None = None
        self.transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.busy = False
        self.complete = False  # set by the parser's callback at the end of a final response
        self.status = 0  # that response's status
        self.keep_alive = True  # whether that response lets the connection be reused
        self.reused = False  # the request in flight is not the first on its connection
        self.intended_ns = MISSING
        self.begun_ns = 0  # when this request's attempt began (connect or send): for timeouts
        self.sent_ns = MISSING
        self.connect_ns = MISSING
        self.first_byte_ns = MISSING
        self.first_chunk = b""
        self.received = 0

    def on_message_begin(self) -> None:
        # A response starting after this request's final one, in the same read: the server
        # answered something nobody asked (or framed its answer wrongly). llhttp stops on the
        # raise, and the request is counted malformed rather than matched to the wrong answer.
        if self.complete:
            raise HttpParserError("a response after the final response to the request")

    def on_message_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()  # type: ignore[union-attr]
        if status < 200:
            return  # 1xx: interim (100 Continue, 103 Early Hints); the final answer follows
        self.complete = True
        self.status = status
        # Only true inside this callback: llhttp resets its flags when the message ends.
        self.keep_alive = parser.should_keep_alive()  # type: ignore[union-attr]

    # --- connecting -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect ahead of the run (raises on failure; the first send then retries)."""
        await self._open_wire()

    async def _open_wire(self) -> None:
        loop = asyncio.get_running_loop()
        plan = self.engine.plan
        transport, wire = await loop.create_connection(lambda: _Wire(self), plan.host, plan.port)
        self.engine.count_connected()
        sock = transport.get_extra_info("socket")
        if sock is not None:  # asyncio and uvloop both set it, but say so: one write per request
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.wire = wire
        self.transport = transport
        self.parser = response_parser(self, method=plan.method)
        self.repeat = None

    async def _connect_then_send(self) -> None:
        began = perf_counter_ns()
        try:
            await self._open_wire()
        except ConnectionRefusedError:
            self.engine.count_refused(began)
            self._connect_failed(began, ErrorKind.CONNECT_REFUSED)
        except OSError:
            self._connect_failed(began, ErrorKind.CONNECT_ERROR)
        else:
            if self.connect_ns == MISSING:
                self.connect_ns = perf_counter_ns() - began
            if self.busy:
                self._write()
        finally:
            if self._connecting is asyncio.current_task():
                self._connecting = None

    def _connect_failed(self, began: int, error: ErrorKind) -> None:
        if not self.busy:
            return
        now = perf_counter_ns()
        self.connect_ns = now - began
        if self.sent_ns == MISSING:
            self.sent_ns = began  # never sent: the attempt's start stands in for the send
        self._finish(now, 0, error, drop=True, connect_failed=True)

    # --- one request: the hot path ------------------------------------------------------------

    def send(self, intended_ns: int) -> None:
        self.busy = True
        self.intended_ns = intended_ns
        if self.transport is None:
            self.sent_ns = MISSING
            self.connect_ns = MISSING  # this request's own connect, not the last one's
            self.begun_ns = perf_counter_ns()
            self._connecting = asyncio.ensure_future(self._connect_then_send())
            return
        self.connect_ns = MISSING
        self.reused = True
        self.sent_ns = self.begun_ns = perf_counter_ns()
        self.transport.write(self.request or self.engine.pick_request())

    def _write(self) -> None:
        """Send after a (re)connect; a retry keeps the first send's time: the wait is real."""
        self.reused = False
        now = perf_counter_ns()
        if self.sent_ns == MISSING:
            self.sent_ns = now
        self.begun_ns = now
        self.transport.write(self.request or self.engine.pick_request())  # type: ignore[union-attr]

    def on_data(self, data: bytes) -> None:
        now = perf_counter_ns()
        repeat = self.repeat
        if (repeat is not None and self.first_byte_ns == MISSING and len(data) == repeat.length
                and data.startswith(repeat.prefix) and data.endswith(repeat.suffix)
                and data.find(b"\r", repeat.gap_start, repeat.gap_end) < 0 and self.busy):
            # The previous answer again, byte for byte but for its Date: the framing llhttp
            # checked then holds now, and the parser is between messages. ~0.3 µs saved.
            status = repeat.status
            keep_alive = repeat.keep_alive
            first_byte_ns = now
            received = len(data)
        else:
            if self.first_byte_ns == MISSING:
                if not self.busy:
                    self._drop_connection(reset=True)  # bytes nobody asked for (a 408 when idle)
                    return
                self.first_byte_ns = now
            self.received += len(data)
            parser = self.parser
            try:
                parser.feed_data(data)  # type: ignore[union-attr]
            except HttpParserError:
                self._finish(now, 0, ErrorKind.MALFORMED, drop=True, reset=True)
                return
            first_byte_ns = self.first_byte_ns
            if not self.complete:
                if first_byte_ns == now:
                    self.first_chunk = data  # kept for body_ends_at_close(), off the common path
                return
            self.complete = False
            status = self.status
            keep_alive = self.keep_alive
            received = self.received
            self.first_byte_ns = MISSING
            self.received = 0
            # A whole answer in one chunk may come again: remember how it looked.
            self.repeat = RepeatedResponse.learn(data, status, keep_alive) if first_byte_ns == now else None
        self.rows += ROW.pack(self.intended_ns, self.sent_ns, self.connect_ns, first_byte_ns,
                              now, status, received, 0 if status < 400 else BAD_STATUS)
        engine = self.engine
        if keep_alive and now < engine.continue_until_ns and engine.started < engine.budget:
            # Closed loop, the common case: the next request goes out at once on this
            # connection, without the general bookkeeping of send() and lane_free().
            engine.started += 1
            self.connect_ns = MISSING
            self.reused = True
            self.sent_ns = self.begun_ns = perf_counter_ns()
            self.transport.write(self.request or engine.pick_request())  # type: ignore[union-attr]
            return
        self.busy = False
        if not keep_alive or not engine.keepalive:
            self._drop_connection()
        engine.lane_free(self, now, False)

    def on_lost(self, wire: _Wire, exc: Exception | None) -> None:
        if wire is not self.wire:
            return  # a connection this lane already let go of
        self.wire = None
        self.transport = None
        if not self.busy or self.sent_ns == MISSING:
            return
        now = perf_counter_ns()
        if exc is None and self.received and body_ends_at_close(self.first_chunk):
            status = self.parser.get_status_code()  # type: ignore[union-attr]
            self._finish(now, status, BAD_STATUS if status >= 400 else ErrorKind.NONE, drop=False)
            return
        if self._may_retry(exc):
            self.begun_ns = now
            self.connect_ns = MISSING
            self._connecting = asyncio.ensure_future(self._connect_then_send())
            return
        error = ErrorKind.CLOSED_BY_SERVER if exc is None else _error_kind(exc)
        self._finish(now, 0, error, drop=False)

    def _may_retry(self, exc: Exception | None) -> bool:
        """A reused connection that died before any answer byte: the server closed it idle.

        The retry goes out on a new connection (``reused`` false), so it is never retried again.
        """
        stale = exc is None or isinstance(exc, (ConnectionResetError, BrokenPipeError))
        return (stale and self.reused and not self.received
                and self.engine.plan.method in IDEMPOTENT and not self.engine.stopped_by_owner)

    def expire(self, now: int) -> None:
        """No complete answer within the timeout: count it and drop the connection."""
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
            if self.sent_ns == MISSING:
                self.sent_ns = self.begun_ns
        self._finish(now, 0, ErrorKind.TIMEOUT, drop=True, reset=True)

    def _finish(self, done_ns: int, status: int, error: int, *, drop: bool, reset: bool = False,
                connect_failed: bool = False) -> None:
        """Record a request that ended other than by a complete response on a live connection."""
        self.rows += ROW.pack(self.intended_ns, self.sent_ns, self.connect_ns, self.first_byte_ns,
                              done_ns, status, self.received, error)
        if error and error != BAD_STATUS:
            self.engine.errors += 1
        self.busy = False
        self.complete = False
        self.first_byte_ns = MISSING
        self.received = 0
        if drop or not self.engine.keepalive:
            self._drop_connection(reset=reset)
        self.engine.lane_free(self, done_ns, connect_failed)

    def _drop_connection(self, *, reset: bool = False) -> None:
        transport = self.transport
        self.wire = None
        self.transport = None
        if transport is None:
            return
        if reset:
            # A connection in an unknown state (timed out, garbled) is reset rather than
            # closed: a late answer on it must not be read as the next request's.
            transport.abort()
        else:
            transport.close()

    def abandon(self) -> None:
        """Stop without recording (the run was stopped by its owner, or it is over)."""
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        self.busy = False
        self._drop_connection(reset=True)


def _error_kind(exc: BaseException) -> ErrorKind:
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return ErrorKind.RESET
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT
    return ErrorKind.OTHER


class Engine:
    """Runs one plan on the current event loop and records every request."""

    def __init__(self, plan: EnginePlan) -> None:
        self.plan = plan
        self.recorder = Recorder()
        self.errors = 0  # failed requests so far (bad statuses not included), for progress
        self.connected = 0  # connections opened, ever
        self.refused = 0  # connection attempts refused
        self.refused_since_connect = 0  # refusals since a connection was last opened
        self.first_refused_ns = self.last_refused_ns = 0  # when the first and last were tried
        self.gave_up: str | None = None  # why the run was ended early by the engine itself
        self.keepalive = plan.keepalive
        self.requests = plan.requests
        self.request_count = len(plan.requests)
        self.budget = plan.max_requests if plan.max_requests is not None else sys.maxsize
        self.lanes = [self.lane_type(self) for _ in range(plan.connections)]
        self.picked = 0  # requests taken from the list of paths
        self.started = 0  # requests begun (each becomes exactly one row)
        self.stopping = False  # no new requests: deadline, request budget, or stop()
        self.stopped_by_owner = False
        self.abandoned = 0
        self.start_ns = 0
        self.deadline_ns = 0
        self.end_ns = 0  # when the load stopped being offered
        # Lanes send their next request straight from data_received while the clock is
        # below this: the closed loop's deadline; 0 for the open loop and once stopping.
        self.continue_until_ns = 0
        self._finished: asyncio.Future[None] | None = None
        self._housekeeping: asyncio.TimerHandle | None = None

    @property
    def lane_type(self) -> type[Lane]:
        if self.plan.websocket is None:
            return Lane
        # Imported here: the WebSocket lane is a Lane, defined in a module that imports this one.
        from lab.engine.websocket import WebSocketLane
        return WebSocketLane

    def pick_request(self) -> bytes:
        """The next path's request, in turn (only used with several paths)."""
        request = self.requests[self.picked % self.request_count]
        self.picked += 1
        return request

    async def connect(self) -> int:
        """Open every lane before the run starts; returns how many failed (they retry later).

        Bounded by the request timeout: against a listener whose backlog is full, a connect
        waits for SYN retransmissions for minutes.
        """
        if not self.plan.keepalive:
            return 0
        opening = [asyncio.ensure_future(lane.open()) for lane in self.lanes]
        _, late = await asyncio.wait(opening, timeout=self.plan.timeout_ns / NS_PER_S)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        failed = [task for task in opening if task.cancelled() or task.exception() is not None]
        self.refused += sum(not task.cancelled() and isinstance(task.exception(), ConnectionRefusedError)
                            for task in failed)
        return len(failed)

    async def run(self, start_ns: int, *, should_stop: Callable[[], bool] = lambda: False,
                  on_housekeeping: Callable[[Engine], None] = lambda engine: None) -> None:
        """Offer the load from ``start_ns`` (perf_counter_ns) until the plan's bounds."""
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        self.start_ns = start_ns
        self.deadline_ns = start_ns + self.plan.duration_ns
        self._should_stop = should_stop
        self._on_housekeeping = on_housekeeping
        wait = (start_ns - perf_counter_ns()) / NS_PER_S
        if wait > 0:
            await asyncio.sleep(wait)
        while perf_counter_ns() < start_ns:  # sleep() may wake up to a millisecond early
            await asyncio.sleep(0)
        self.begin()
        self._housekeeping = loop.call_later(HOUSEKEEPING_SECONDS, self._housekeep)
        try:
            await self._finished
        finally:
            self._housekeeping.cancel()
            self.cleanup()
            for lane in self.lanes:
                lane.abandon()

    def begin(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Release what begin() set up (the run is over)."""

    def lane_free(self, lane: Lane, now: int, connect_failed: bool) -> None:
        raise NotImplementedError

    def in_flight(self) -> int:
        return sum(lane.busy for lane in self.lanes)

    def may_start(self, now: int) -> bool:
        if self.stopping:
            return False
        if now >= self.deadline_ns or self.started >= self.budget:
            self.stop_offering(min(now, self.deadline_ns))
            return False
        return True

    def stop_offering(self, now: int) -> None:
        if not self.stopping:
            self.stopping = True
            self.continue_until_ns = 0
            self.end_ns = now

    def check_finished(self) -> None:
        if self.stopping and self._finished is not None and not self._finished.done() \
                and self.pending() == 0 and self.in_flight() == 0:
            self._finished.set_result(None)

    def pending(self) -> int:
        return 0

    def _housekeep(self) -> None:
        now = perf_counter_ns()
        self._expire_timeouts(now)
        if not self.stopped_by_owner and self._should_stop():
            self.stopped_by_owner = True
            self.stop_offering(now)
            self.abandoned += self.pending()
            self.drop_pending()
        if not self.stopping and self._nobody_listening():
            # wrk's behaviour: a port where nobody listens fails the run at once instead of
            # filling the whole duration with refusals.
            plan = self.plan
            gone = " any more: the target went away during the run" if self.connected else ""
            self.gave_up = f"connection refused: nothing is listening on {plan.host}:{plan.port}{gone}"
            self.stop_offering(now)
            self.abandoned += self.pending()
            self.drop_pending()
        if not self.stopping:
            self.may_start(now)  # notices the deadline even when every lane is stuck
        if self.stopped_by_owner and now - self.end_ns > STOP_GRACE_NS:
            self._abandon_rest()
        self._on_housekeeping(self)
        self.check_finished()
        if self._finished is not None and not self._finished.done():
            self._housekeeping = asyncio.get_running_loop().call_later(
                HOUSEKEEPING_SECONDS, self._housekeep)

    def count_connected(self) -> None:
        """Every lane type calls this when a connection opens (HTTP and WebSocket alike)."""
        self.connected += 1
        self.refused_since_connect = 0

    def count_refused(self, attempted_ns: int) -> None:
        self.refused += 1
        if self.refused_since_connect == 0:
            self.first_refused_ns = attempted_ns
        self.last_refused_ns = attempted_ns
        self.refused_since_connect += 1

    def _nobody_listening(self) -> bool:
        """Every lane has been refused and no connection was ever opened -- or, after some were,
        every connection tried over GONE_AFTER_NS has been refused, from the first refusal to
        the last (wrk would go on counting errors for the rest of the run; there is nothing
        left to measure). Refusals must span the time: one refusal and a quiet spell (a slow
        open loop) is not a target gone."""
        if self.connected == 0:
            return self.refused >= len(self.lanes)
        return (self.refused_since_connect >= 2
                and self.last_refused_ns - self.first_refused_ns >= GONE_AFTER_NS)

    def _expire_timeouts(self, now: int) -> None:
        limit = self.plan.timeout_ns
        for lane in self.lanes:
            if lane.busy and now - lane.begun_ns > limit:
                lane.expire(now)

    def _abandon_rest(self) -> None:
        for lane in self.lanes:
            if lane.busy:
                self.abandoned += 1
                lane.abandon()
        self.abandoned += self.pending()
        self.drop_pending()

    def drop_pending(self) -> None:
        pass


class ClosedLoop(Engine):
    """Each lane sends its next request as soon as its last answer is complete (wrk), or after
    a think time: an exponentially distributed pause, as a user reading the page.

    A lane that is thinking has no request in flight: its latency is not running, and the run
    may end while it thinks (the pause is cancelled, nothing is recorded for it).
    """

    def __init__(self, plan: EnginePlan) -> None:
        super().__init__(plan)
        self.think_s = plan.think_ns / NS_PER_S
        self._thinking: dict[Lane, asyncio.TimerHandle] = {}
        self._random = random.Random()

    def begin(self) -> None:
        now = perf_counter_ns()
        if self.keepalive and not self.think_s:
            self.continue_until_ns = self.deadline_ns
        for lane in self.lanes:
            if not self.may_start(now):
                break
            if self.think_s:
                self._think(lane)  # users arrive spread out, not all in the first instant
                continue
            self.started += 1
            lane.send(MISSING)

    def cleanup(self) -> None:
        for pause in self._thinking.values():
            pause.cancel()
        self._thinking.clear()

    def lane_free(self, lane: Lane, now: int, connect_failed: bool) -> None:
        if now >= self.deadline_ns or self.started >= self.budget or self.stopping:
            self.may_start(now)  # notes when and why the load stopped
            self.check_finished()
            return
        if self.think_s and not connect_failed:
            self._think(lane)
            return
        self.started += 1
        if connect_failed:
            # Do not spin on a dead server: wait a moment, as a browser would.
            asyncio.get_running_loop().call_later(CONNECT_RETRY_SECONDS, self._send_later, lane)
            return
        lane.send(MISSING)

    def _send_later(self, lane: Lane) -> None:
        if self.stopping:
            self.started -= 1  # counted when it was planned; it never began
            self.check_finished()
            return
        lane.send(MISSING)

    def _think(self, lane: Lane) -> None:
        pause = self._random.expovariate(1.0) * self.think_s
        self._thinking[lane] = asyncio.get_running_loop().call_later(pause, self._thought, lane)

    def _thought(self, lane: Lane) -> None:
        del self._thinking[lane]
        if not self.may_start(perf_counter_ns()):
            self.check_finished()
            return
        self.started += 1
        lane.send(MISSING)


class OpenLoop(Engine):
    """Requests are due at a constant rate whatever the answers do (wrk2).

    Request ``k`` is due at ``start + offset + k / rate``, or where the rate stages put it
    (lab.engine.stages). A due request takes a free lane;
    when none is free it waits in a queue and is sent when a lane frees up, still timed from
    its intended time (the coordinated-omission correction). Nothing is ever skipped.
    """

    def __init__(self, plan: EnginePlan) -> None:
        super().__init__(plan)
        assert plan.rate is not None or plan.stages
        self.interval_ns = NS_PER_S / plan.rate if plan.rate is not None else 0.0
        self.schedule = Schedule(plan.stages) if plan.stages else None
        self.idle: list[Lane] = []
        self.queue: collections.deque[int] = collections.deque()
        self.scheduled = 0
        self.next_intended_ns = 0
        self.timer: TimerfdTimer | CoarseTimer | None = None

    def begin(self) -> None:
        self.idle = list(reversed(self.lanes))
        self.next_intended_ns = self._intended(0)
        self.timer = precise_timer(asyncio.get_running_loop(), self._dispatch)
        self._dispatch()

    def cleanup(self) -> None:
        if self.timer is not None:
            self.timer.close()
            self.timer = None

    def _intended(self, index: int) -> int:
        if self.schedule is not None:
            due_s = self.schedule.due_s(self.plan.worker + index * self.plan.workers)
            # past the last stage: due at the deadline, where may_start ends the offering
            return self.deadline_ns if due_s is None else self.start_ns + round(due_s * NS_PER_S)
        return self.start_ns + self.plan.offset_ns + int(index * self.interval_ns)

    def _dispatch(self) -> None:
        now = perf_counter_ns()
        while self.next_intended_ns <= now:
            if not self.may_start(self.next_intended_ns):
                self.check_finished()
                return
            intended = self.next_intended_ns
            self.started += 1
            self.scheduled += 1
            self.next_intended_ns = self._intended(self.scheduled)
            if self.idle:
                self.idle.pop().send(intended)
            else:
                self.queue.append(intended)
        self._arm(now)

    def _arm(self, now: int) -> None:
        assert self.timer is not None
        wake_at = self.next_intended_ns - self.timer.early_ns
        if wake_at > now:
            self.timer.arm_at(wake_at)
        else:
            # Poll the last stretch: each turn of the loop still serves I/O first, and the
            # request goes out within microseconds of its intended time.
            asyncio.get_running_loop().call_soon(self._dispatch)

    def lane_free(self, lane: Lane, now: int, connect_failed: bool) -> None:
        if self.queue and not self.stopped_by_owner:
            lane.send(self.queue.popleft())
            return
        self.idle.append(lane)
        if self.stopping:
            self.check_finished()

    def pending(self) -> int:
        return len(self.queue)

    def drop_pending(self) -> None:
        self.queue.clear()

    def _housekeep(self) -> None:
        if self.stopping and not self.stopped_by_owner and self.queue:
            self._expire_queue(perf_counter_ns())
        super()._housekeep()

    def _expire_queue(self, now: int) -> None:
        """After the deadline, queued requests get until the timeout to find a lane."""
        if now - self.end_ns <= self.plan.timeout_ns:
            return
        while self.queue:
            intended = self.queue.popleft()
            self.recorder.add(intended, MISSING, MISSING, MISSING, now, 0, 0, ErrorKind.TIMEOUT)
            self.errors += 1


def make_engine(plan: EnginePlan) -> Engine:
    return OpenLoop(plan) if plan.mode == "open" else ClosedLoop(plan)

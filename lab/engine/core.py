"""The event-loop side of one generator process: the two load models, over lanes.

An :class:`Engine` drives a set of lanes (lab.engine.lane: one connection slot each, of the
lane type it is handed -- HTTP or WebSocket) and records every request. :class:`ClosedLoop`
has each lane send its next request as soon as its answer is in (wrk's model; the lanes do
that themselves, from the callback that read the answer); :class:`OpenLoop` sends requests at
their intended times on whichever lane is free, and a request finding no free lane waits in a
queue, timed from its intended time (wrk2's model).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import sys
from collections.abc import Callable
from time import perf_counter_ns

from lab.engine.lane import Lane
from lab.engine.plan import RETRY_BUDGET_MAX_TOKENS, EnginePlan
from lab.engine.recorder import Recorder
from lab.engine.secure import TlsClient
from lab.engine.stages import Schedule
from lab.engine.timer import CoarseTimer, TimerfdTimer, precise_timer
from lab.measure.samples import MISSING, ErrorKind
from lab.units import NS_PER_S

HOUSEKEEPING_SECONDS = 0.05  # how often the stop flag, the deadline and progress are looked at
CONNECT_AHEAD_SECONDS = 1.0  # at most this long opening connections before the run
CONNECT_RETRY_SECONDS = 0.01  # a closed-loop lane waits this long after a failed connect
STOP_GRACE_NS = NS_PER_S // 2  # after stop(), answers still in flight get this long
# A target that refuses every connection tried over this long, after it had accepted some,
# has gone away. A server re-creating its listener for a knob change is back within
# milliseconds in a thread; in processes its new workers take a few hundred (spawn, imports),
# more on a machine the load keeps busy.
GONE_AFTER_NS = 3 * NS_PER_S


class Engine:
    """Runs one plan on the current event loop, over lanes of ``lane_type``, and records every
    request."""

    def __init__(self, plan: EnginePlan, lane_type: type[Lane]) -> None:
        self.plan = plan
        self.recorder = Recorder()
        self.errors = 0  # failed requests so far (bad statuses not included), for progress
        self.connected = 0  # connections opened, ever
        self.refused = 0  # connection attempts refused
        self.refused_since_connect = 0  # refusals since a connection was last opened
        self.first_refused_ns = self.last_refused_ns = 0  # when the first and last were tried
        self.gave_up: str | None = None  # why the run was ended early by the engine itself
        self.keepalive = plan.keepalive
        # One TLS context per process (loading the CA takes milliseconds), and its counts.
        self.tls = None if plan.tls is None else TlsClient(plan.tls, timeout_s=plan.timeout_ns / NS_PER_S)
        self.requests = plan.requests
        self.request_count = len(plan.requests)
        self.budget = plan.max_requests if plan.max_requests is not None else sys.maxsize
        self.lanes = [lane_type(self) for _ in range(plan.connections)]
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
        # Timeouts have a timer of their own, armed at the earliest deadline of a request in
        # flight: at the housekeeping tick a 5 ms timeout would be enforced 50 ms late.
        self._expiry: TimerfdTimer | CoarseTimer | None = None
        self.expiry_armed = False
        self.expiry_at_ns = 0
        # Retries (plan.retry): the budget's saved-up retries, and the draws of the jitter.
        self.retry_tokens = RETRY_BUDGET_MAX_TOKENS
        self._retry_random = random.Random()

    def pick_request(self) -> bytes:
        """The next path's request, in turn (only used with several paths)."""
        request = self.requests[self.picked % self.request_count]
        self.picked += 1
        return request

    async def connect(self) -> int:
        """Open every lane before the run starts; returns how many failed (they retry later).

        Bounded by the request timeout, and by CONNECT_AHEAD_SECONDS: against a listener whose
        backlog is full, a connect waits for SYN retransmissions for minutes, and against a
        server whose handshake never ends, waiting a whole timeout here and another for the
        run's last requests would stretch the run past its duration and timeout. A lane not
        open by then connects for its first request, its connect time charged to it.
        """
        if not (self.plan.keepalive and self.plan.connect_before):
            return 0  # each lane connects at its first send
        opening = [asyncio.ensure_future(lane.open()) for lane in self.lanes]
        _, late = await asyncio.wait(opening, timeout=min(self.plan.timeout_ns / NS_PER_S,
                                                           CONNECT_AHEAD_SECONDS))
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
        if not self.plan.connect_before:
            self.open_with_load()
        self._expiry = precise_timer(loop, self._expire_due)
        self.begin()
        self._housekeeping = loop.call_later(HOUSEKEEPING_SECONDS, self._housekeep)
        try:
            await self._finished
        finally:
            self._housekeeping.cancel()
            self._expiry.close()
            self._expiry = None
            self.expiry_armed = False
            self.cleanup()
            for lane in self.lanes:
                lane.abandon()

    def begin(self) -> None:
        raise NotImplementedError

    def open_with_load(self) -> None:
        """Every lane's SYN in one pass, as wrk sends them (``connect="with-load"``)."""
        for lane in self.lanes:
            lane.start_connecting(None)

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
        if not self.stopping and self.tls is not None:
            # A handshake that fails on every connection fails on the next one too (the
            # certificate, the versions): the run ends at once, saying why, as for a closed port.
            failing = self.tls.nothing_negotiated(len(self.lanes))
            if failing is not None:
                self.gave_up = failing
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

    def arm_expiry(self, deadline_ns: int) -> None:
        """A lane began a request while no timeout was watched: watch its deadline.

        Only needed then: a request begun later has a later deadline than every one in
        flight, and the timer, when it fires, re-arms itself for the earliest one left."""
        if self._expiry is not None:
            self.expiry_armed = True
            self.expiry_at_ns = deadline_ns
            self._expiry.arm_at(deadline_ns)

    def _expire_due(self) -> None:
        now = perf_counter_ns()
        self.expiry_armed = False
        for lane in self.lanes:
            if lane.busy and now - lane.begun_ns > lane.timeout_ns:
                lane.expire(now)
        # each lane's own limit: a request's deadline may cut an attempt short of the timeout
        expiries = [lane.begun_ns + lane.timeout_ns for lane in self.lanes if lane.busy]
        if expiries:
            self.arm_expiry(min(expiries) + 1)

    # --- retries (plan.retry) ---------------------------------------------------------------

    def deposit_retry_token(self) -> None:
        """A request begins: the budget earns its share of a retry."""
        share = self.plan.retry.budget_share  # type: ignore[union-attr]
        if share is not None:
            self.retry_tokens = min(RETRY_BUDGET_MAX_TOKENS, self.retry_tokens + share)

    def plan_retry(self, lane: Lane, now: int, error: int, status: int) -> bool:
        """Whether the lane's failed attempt gets another, and if so schedule it: a failure the
        policy retries, attempts left, not past the request's deadline once the backoff is
        waited, and a retry in the budget."""
        policy = self.plan.retry
        assert policy is not None
        if self.stopping or lane.attempt >= policy.retries or not policy.retries_failure(error, status):
            return False
        delay_ns = policy.backoff_before(lane.attempt + 1, self._retry_random)
        if now + delay_ns >= lane.deadline_at_ns:
            return False
        if policy.budget_share is not None:
            if self.retry_tokens < 1:
                return False
            self.retry_tokens -= 1
        self.schedule_retry(lane, lane.request_start_ns, lane.attempt + 1, delay_ns)
        return True

    def schedule_retry(self, lane: Lane, start_ns: int, attempt: int, delay_ns: int) -> None:
        raise NotImplementedError

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

    Without think time, while the deadline and the budget allow (``continue_until_ns``), a
    lane sends its next request itself, from :meth:`~lab.engine.lane.Lane.end_request`;
    :meth:`lane_free` is for everything else (a dropped connection, a failed connect, think
    time, the end of the offering).
    """

    def __init__(self, plan: EnginePlan, lane_type: type[Lane]) -> None:
        super().__init__(plan, lane_type)
        self.think_s = plan.think_ns / NS_PER_S
        self._thinking: dict[Lane, asyncio.TimerHandle] = {}
        self._random = random.Random()
        # A lane whose attempt failed and gets another: (request start, attempt, backoff ns).
        # Its user waits for the retry instead of sending a new request.
        self._retry_next: dict[Lane, tuple[int, int, int]] = {}

    def begin(self) -> None:
        now = perf_counter_ns()
        if self.keepalive and not self.think_s and self.plan.retry is None:
            # (with retries or a deadline every request ends through lane_free, which knows them)
            self.continue_until_ns = self.deadline_ns
        for lane in self.lanes:
            if not self.may_start(now):
                break
            if self.think_s:
                self._think(lane)  # users arrive spread out, not all in the first instant
                continue
            self.started += 1
            lane.send(MISSING)

    def open_with_load(self) -> None:
        """Every lane's SYN and first request in one pass, as wrk sends them; with think time
        a lane's first request waits, so only its SYN goes."""
        first = min(len(self.lanes), self.budget) if not self.think_s else 0
        for number, lane in enumerate(self.lanes):
            lane.start_connecting(lane.first_request() if number < first else None)

    def cleanup(self) -> None:
        for pause in self._thinking.values():
            pause.cancel()
        self._thinking.clear()

    def schedule_retry(self, lane: Lane, start_ns: int, attempt: int, delay_ns: int) -> None:
        self._retry_next[lane] = (start_ns, attempt, delay_ns)

    def lane_free(self, lane: Lane, now: int, connect_failed: bool) -> None:
        retry = self._retry_next.pop(lane, None) if self._retry_next else None
        if now >= self.deadline_ns or self.started >= self.budget or self.stopping:
            self.may_start(now)  # notes when and why the load stopped
            self.check_finished()
            return
        if retry is not None:
            start_ns, attempt, delay_ns = retry
            self._thinking[lane] = asyncio.get_running_loop().call_later(
                delay_ns / NS_PER_S, self._retry, lane, start_ns, attempt)
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

    def _retry(self, lane: Lane, start_ns: int, attempt: int) -> None:
        del self._thinking[lane]
        if self.stopping or perf_counter_ns() >= self.deadline_ns:
            self.check_finished()
            return
        lane.send(start_ns, attempt)

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

    def __init__(self, plan: EnginePlan, lane_type: type[Lane]) -> None:
        super().__init__(plan, lane_type)
        assert plan.rate is not None or plan.stages
        self.interval_ns = NS_PER_S / plan.rate if plan.rate is not None else 0.0
        self.schedule = Schedule(plan.stages) if plan.stages else None
        self.idle: list[Lane] = []
        # Requests due that found no free lane: (intended or request start, attempt).
        self.queue: collections.deque[tuple[int, int]] = collections.deque()
        self._retries: dict[int, asyncio.TimerHandle] = {}  # retries waiting out their backoff
        self._retry_keys = itertools.count()
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
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()

    def _intended(self, index: int) -> int:
        if self.schedule is not None:
            due_s = self.schedule.due_s(self.plan.worker + index * self.plan.workers)
            # past the last stage: due at the deadline, where may_start ends the offering
            return self.deadline_ns if due_s is None else self.start_ns + round(due_s * NS_PER_S)
        return self.start_ns + self.plan.offset_ns + int(index * self.interval_ns)

    def _dispatch(self) -> None:
        now = perf_counter_ns()
        if self._send_due(now):
            self._arm(now)

    def _send_due(self, now: int) -> bool:
        """Send (or queue) every request due by ``now``; False once the offering has ended."""
        while self.next_intended_ns <= now:
            if not self.may_start(self.next_intended_ns):
                self.check_finished()
                return False
            intended = self.next_intended_ns
            self.started += 1
            self.scheduled += 1
            self.next_intended_ns = self._intended(self.scheduled)
            if self.idle:
                self.idle.pop().send(intended)
            else:
                self.queue.append((intended, 0))
        return True

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
        while self.queue and not self.stopped_by_owner:
            start, attempt = self.queue.popleft()
            if self._past_deadline(start, now):
                self._record_never_sent(start, attempt, now, ErrorKind.DEADLINE)
                continue
            lane.send(start, attempt)
            return
        self.idle.append(lane)
        if self.stopping:
            self.check_finished()

    def schedule_retry(self, lane: Lane, start_ns: int, attempt: int, delay_ns: int) -> None:
        # Never from inside the lane's own end: the lane frees first, then the retry takes
        # whichever lane is free (or waits in the queue like any request due).
        loop = asyncio.get_running_loop()
        key = next(self._retry_keys)
        self._retries[key] = loop.call_later(delay_ns / NS_PER_S, self._retry_due, key, start_ns, attempt)

    def _retry_due(self, key: int, start_ns: int, attempt: int) -> None:
        del self._retries[key]
        if self.stopping:
            self.check_finished()
            return
        if self.idle:
            self.idle.pop().send(start_ns, attempt)
        else:
            self.queue.append((start_ns, attempt))

    def _past_deadline(self, start_ns: int, now: int) -> bool:
        policy = self.plan.retry
        return policy is not None and policy.deadline_ns is not None and now >= start_ns + policy.deadline_ns

    def _record_never_sent(self, start: int, attempt: int, now: int, error: ErrorKind) -> None:
        self.recorder.add(start, MISSING, MISSING, MISSING, now, 0, 0, error, attempt)
        self.errors += 1

    def pending(self) -> int:
        return len(self.queue)

    def drop_pending(self) -> None:
        self.queue.clear()

    def _housekeep(self) -> None:
        if not self.stopping:
            # A dispatcher running late (a busy loop, a busy machine) still owes the requests
            # due before the deadline: send them before the deadline check below ends the
            # offering, or the run offers fewer than rate x duration and says nothing.
            self._send_due(perf_counter_ns())
        if self.stopping and not self.stopped_by_owner and self.queue:
            self._expire_queue(perf_counter_ns())
        elif self.queue and self.plan.retry is not None and self.plan.retry.deadline_ns is not None:
            self._drop_past_deadline(perf_counter_ns())
        super()._housekeep()

    def _drop_past_deadline(self, now: int) -> None:
        """Requests that waited for a lane past their deadline: their callers gave up, so they
        end now, never sent, rather than when a lane frees up."""
        kept: collections.deque[tuple[int, int]] = collections.deque()
        for start, attempt in self.queue:
            if self._past_deadline(start, now):
                self._record_never_sent(start, attempt, now, ErrorKind.DEADLINE)
            else:
                kept.append((start, attempt))
        self.queue = kept

    def _expire_queue(self, now: int) -> None:
        """After the deadline, queued requests get until the timeout to find a lane."""
        if now - self.end_ns <= self.plan.timeout_ns:
            return
        while self.queue:
            intended, attempt = self.queue.popleft()
            self._record_never_sent(intended, attempt, now, ErrorKind.TIMEOUT)


def make_engine(plan: EnginePlan, lane_type: type[Lane]) -> Engine:
    """The plan's load model, over lanes of ``lane_type`` (lab.engine.worker.lane_type_for)."""
    return (OpenLoop if plan.mode == "open" else ClosedLoop)(plan, lane_type)

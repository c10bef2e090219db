"""The back end behind ``GET /backend``: K workers, a waiting queue in front, and its cures.

A service rarely does its work itself: it waits for a database or another service with a
fixed number of workers (a connection pool). This module is that back end, on the server's
own event loop: ``backend_workers`` slots, each busy for a service time drawn from a fixed or
exponential distribution (a sleep: the slots wait, the loop does not), and a queue where
requests wait for a free slot, served in the order ``backend_queue`` says:

- ``fifo``: oldest first. Under overload every request waits the whole queue, so once the
  queue is longer than the callers' timeout every answer comes too late.
- ``lifo``: newest first (Facebook's "adaptive LIFO", Fail at Scale, 2015): the requests
  whose callers are most likely still waiting are served; the old ones wait on.
- ``codel``: oldest first, but with CoDel's idea of a standing queue (Nichols and Jacobson,
  2012): a queue that has not been empty for ``CODEL_INTERVAL_MS`` is standing, and then a
  request that waited longer than ``backend_codel_target_ms`` is dropped instead of served
  (when the queue empties now and then, the interval itself is the bound).

The cures, each a knob: ``backend_queue_limit`` sheds a request that finds that many waiting
(503 with ``Retry-After``, at once, at no cost); ``backend_deadline_ms`` drops a request that
waited longer than that (503, and its work is never done); ``backend_shed_percent`` refuses a
share of requests at random (a server that sheds half its load, for the retry tests).

A job, once queued, is not cancelled when its caller goes away: as a query handed to a
database, it is done (or dropped by the deadline) whoever still waits for it. That wasted work
is what keeps an overloaded service overloaded after a client's timeouts; the deadline and
CoDel are what drop it.
"""

from __future__ import annotations

import asyncio
import collections
import random
from typing import Protocol

from lab.http.config import ServerConfig

# CoDel's interval: the queue counts as standing once it has not emptied for this long (the
# value Nichols and Jacobson and Facebook's queue both use).
CODEL_INTERVAL_MS = 100.0
MS_PER_S = 1000.0


class Outcome:
    """How a request to the back end ended (each counted in the server's stats)."""

    SERVED = "served"
    SHED = "shed"  # refused on arrival: queue full, or the random share
    DROPPED = "dropped"  # waited past the deadline (or CoDel's target) and was never served


class Counters(Protocol):
    backend_served: int
    backend_shed: int
    backend_dropped: int


class Owner(Protocol):
    """What the back end needs of the server state that holds it (lab.http.state.ServerState,
    which imports this module): its loop, its live settings, its counters."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def settings(self) -> ServerConfig: ...
    @property
    def stats(self) -> Counters: ...


class _Waiter:
    __slots__ = ("future", "queued_at")

    def __init__(self, future: asyncio.Future[bool], queued_at: float) -> None:
        self.future = future  # True: a worker is its; False: dropped while it waited
        self.queued_at = queued_at


class Backend:
    """The pool and its queue for one server loop (one per ServerState)."""

    def __init__(self, state: Owner) -> None:
        self.state = state
        self.busy = 0
        self.queue: collections.deque[_Waiter] = collections.deque()
        # Waiters not yet given a worker or dropped (the queue also holds dropped ones until a
        # worker passes them): counted, not summed, since the queue may hold thousands.
        self.waiting = 0
        self.empty_at = state.loop.time()  # when the queue was last seen empty (CoDel)
        self.jobs: set[asyncio.Task[str]] = set()  # kept: the loop holds tasks only weakly

    def start(self) -> asyncio.Task[str]:
        """One request's job, as a task of its own: a caller that leaves does not cancel it."""
        job = self.state.loop.create_task(self.call())
        self.jobs.add(job)
        job.add_done_callback(self.jobs.discard)
        return job

    async def close(self) -> None:
        """The server stops: the jobs still queued or in service end with it."""
        for job in list(self.jobs):
            job.cancel()
        if self.jobs:
            await asyncio.wait(list(self.jobs))

    async def call(self) -> str:
        """One request's trip through the back end: shed, dropped, or served (its service
        time spent)."""
        settings = self.state.settings
        stats = self.state.stats
        if settings.backend_shed_percent and random.random() * 100 < settings.backend_shed_percent:
            stats.backend_shed += 1
            return Outcome.SHED
        if self.busy >= settings.backend_workers or self.waiting:
            limit = settings.backend_queue_limit
            if limit is not None and self.waiting >= limit:
                stats.backend_shed += 1
                return Outcome.SHED
            if not await self._wait_for_worker():
                stats.backend_dropped += 1
                return Outcome.DROPPED
        else:
            self.busy += 1
        try:
            await asyncio.sleep(self._service_seconds())
        finally:
            self.busy -= 1
            self._hand_on()
        stats.backend_served += 1
        return Outcome.SERVED

    async def _wait_for_worker(self) -> bool:
        loop = self.state.loop
        waiter = _Waiter(loop.create_future(), loop.time())
        if not self.queue:
            self.empty_at = waiter.queued_at
        self.queue.append(waiter)
        self.waiting += 1
        deadline_ms = self.state.settings.backend_deadline_ms
        timer = (loop.call_later(deadline_ms / MS_PER_S, self._expire, waiter)
                 if deadline_ms is not None else None)
        try:
            return await waiter.future
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, waiter: _Waiter) -> None:
        """Its deadline passed while it waited: dropped now, not when a worker would reach it
        (under LIFO that may be never)."""
        if not waiter.future.done():
            self.waiting -= 1
            waiter.future.set_result(False)

    def _hand_on(self) -> None:
        """Workers are free: give each to the next waiter the discipline picks (more than one
        when ``backend_workers`` was raised live)."""
        settings = self.state.settings
        now = self.state.loop.time()
        while self.queue and self.busy < settings.backend_workers:
            waiter = self.queue.pop() if settings.backend_queue == "lifo" else self.queue.popleft()
            if not self.queue:
                self.empty_at = now
            if waiter.future.done():
                continue  # dropped at its deadline already
            self.waiting -= 1
            if settings.backend_queue == "codel" and self._codel_drops(waiter, now):
                waiter.future.set_result(False)
                continue
            self.busy += 1
            waiter.future.set_result(True)

    def _codel_drops(self, waiter: _Waiter, now: float) -> bool:
        waited_ms = (now - waiter.queued_at) * MS_PER_S
        standing = (now - self.empty_at) * MS_PER_S > CODEL_INTERVAL_MS
        bound = self.state.settings.backend_codel_target_ms if standing else CODEL_INTERVAL_MS
        return waited_ms > bound

    def _service_seconds(self) -> float:
        settings = self.state.settings
        mean = settings.backend_service_ms / MS_PER_S
        if settings.backend_service == "exponential" and mean > 0:
            return random.expovariate(1 / mean)
        return mean

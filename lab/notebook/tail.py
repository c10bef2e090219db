"""The tail-at-scale lesson's clients: a request that fans out to N backends, and hedging.

The load generator measures one request at a time per connection; these two clients measure a
*logical* request made of several HTTP requests:

- ``fan_out``: each round sends one GET on each of N keep-alive connections at once and waits
  for all N, as a front end waits for its backends; the round takes as long as its slowest leg.
- ``hedged_requests``: one logical request at a time; if no answer has come ``hedge_after_ms``
  after the send, a copy goes out on another connection and the first answer wins (Dean and
  Barroso, "The Tail at Scale", CACM 2013). The loser's answer is read and dropped.

Both run on the caller's asyncio loop (a notebook's top-level ``await``), talk to 127.0.0.1
only, and are bounded by a count and a timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from lab.engine.spec import Target
from lab.errors import ConfigError
from lab.notebook.probes import content_length, get_request, loopback_target

MAX_FAN_OUT = 500
MAX_ROUNDS = 100_000


class _Connection:
    """One keep-alive connection that carries one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, request: bytes) -> None:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        await self.reader.readexactly(content_length(head))

    def close(self) -> None:
        self.writer.close()


def _target(url: str) -> tuple[Target, bytes]:
    target = loopback_target(url)
    return target, get_request(target)


async def _open(target: Target) -> _Connection:
    return _Connection(*await asyncio.open_connection(target.host, target.port))


def _check(name: str, value: int, maximum: int) -> None:
    if not 1 <= value <= maximum:
        raise ConfigError(name, f"must be from 1 to {maximum}, got {value}")


# --- fan-out --------------------------------------------------------------------------------

async def fan_out(url: str, fanout: int, rounds: int, *, timeout_seconds: float = 30.0) -> np.ndarray:
    """``rounds`` fan-out requests of ``fanout`` legs; each leg's latency in ms, one row per round.

    A round's own latency is its row's maximum: the front end answers when the last backend has.
    """
    _check("fanout", fanout, MAX_FAN_OUT)
    _check("rounds", rounds, MAX_ROUNDS)
    target, request = _target(url)
    legs = np.empty((rounds, fanout))
    connections = [await _open(target) for _ in range(fanout)]
    try:
        async with asyncio.timeout(timeout_seconds):
            for round_index in range(rounds):
                legs[round_index] = await asyncio.gather(
                    *(_timed(connection, request) for connection in connections))
    finally:
        for connection in connections:
            connection.close()
    return legs


async def _timed(connection: _Connection, request: bytes) -> float:
    began = time.perf_counter()
    await connection.get(request)
    return (time.perf_counter() - began) * 1000


# --- hedged requests ------------------------------------------------------------------------

@dataclass(frozen=True)
class HedgedRun:
    latency_ms: np.ndarray  # per logical request: until the first answer of either copy
    hedges: int  # copies sent: the extra load hedging cost

    @property
    def extra_load(self) -> float:
        """Requests sent per logical request, beyond one."""
        return self.hedges / self.latency_ms.size


class _Pool:
    """Idle keep-alive connections; a new one is opened when none is free."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.idle: list[_Connection] = []
        self.every: list[_Connection] = []

    async def request(self, request: bytes) -> None:
        connection = self.idle.pop() if self.idle else await self._new()
        await connection.get(request)
        self.idle.append(connection)  # only after a whole answer: it is clean for the next

    async def _new(self) -> _Connection:
        connection = await _open(self.target)
        self.every.append(connection)
        return connection

    def close(self) -> None:
        for connection in self.every:
            connection.close()


async def hedged_requests(url: str, count: int, *, hedge_after_ms: float | None,
                          timeout_seconds: float = 60.0) -> HedgedRun:
    """``count`` logical requests one after another; with ``hedge_after_ms``, a copy is sent
    when the first has not answered by then, and whichever answers first counts."""
    _check("count", count, MAX_ROUNDS)
    if hedge_after_ms is not None and hedge_after_ms < 0:
        raise ConfigError("hedge_after_ms", f"must be 0 or more, got {hedge_after_ms}")
    target, request = _target(url)
    pool = _Pool(target)
    latency_ms = np.empty(count)
    hedges = 0
    losers: set[asyncio.Task[None]] = set()
    try:
        async with asyncio.timeout(timeout_seconds):
            for index in range(count):
                began = time.perf_counter()
                first = asyncio.ensure_future(pool.request(request))
                hedge_s = None if hedge_after_ms is None else hedge_after_ms / 1000
                done, _ = await asyncio.wait({first}, timeout=hedge_s)
                if not done:
                    hedges += 1
                    second = asyncio.ensure_future(pool.request(request))
                    done, pending = await asyncio.wait({first, second},
                                                       return_when=asyncio.FIRST_COMPLETED)
                    losers.update(pending)  # its answer is read and dropped in the background
                latency_ms[index] = (time.perf_counter() - began) * 1000
                for task in done:
                    task.result()  # an error in the winning copy is an error of the request
            if losers:
                await asyncio.gather(*losers)
    finally:
        pool.close()
    return HedgedRun(latency_ms, hedges)


__all__ = ["HedgedRun", "fan_out", "hedged_requests"]

"""What one generator process is asked to do: the plan its engine and lanes follow.

Below both the engines (lab.engine.core) and the lanes (lab.engine.lane and the lane types),
so that neither has to import the other to know it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lab.engine.stages import Stage
from lab.measure.samples import ErrorKind

BACKOFF_CAP_NS = 1_000_000_000  # no backoff grows past a second: AWS's and gRPC's order of cap
# A retry budget saves up at most this many retries: a quiet spell must not buy a burst of
# retries as large as the spell was long (gRPC's retry throttling has the same bound).
RETRY_BUDGET_MAX_TOKENS = 10.0

# --retry-on's words, by the error kinds each one names ("5xx" is a status, not a kind).
RETRIED_KINDS: dict[str, tuple[ErrorKind, ...]] = {
    "timeout": (ErrorKind.TIMEOUT,),
    "reset": (ErrorKind.RESET, ErrorKind.CLOSED_BY_SERVER),
    "connect": (ErrorKind.CONNECT_REFUSED, ErrorKind.CONNECT_ERROR),
    "5xx": (),
}


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Which failed attempts get another, when, and how long a request may take in all."""

    retries: int  # attempts after the first, at most
    kinds: frozenset[int]  # ErrorKind values retried
    server_errors: bool  # a 5xx answer is retried
    backoff: str  # "none", "exponential" or "full-jitter"
    backoff_ns: int
    budget_share: float | None  # retries per request the budget allows (0.1 for 10 %)
    deadline_ns: int | None  # a request's whole time across its attempts

    @classmethod
    def of(cls, retries: int, retry_on: frozenset[str], backoff: str, backoff_ns: int,
           budget_percent: float | None, deadline_ns: int | None) -> RetryPolicy:
        kinds = frozenset(int(kind) for word in retry_on for kind in RETRIED_KINDS[word])
        return cls(retries=retries, kinds=kinds, server_errors="5xx" in retry_on, backoff=backoff,
                   backoff_ns=backoff_ns,
                   budget_share=None if budget_percent is None else budget_percent / 100,
                   deadline_ns=deadline_ns)

    def retries_failure(self, error: int, status: int) -> bool:
        if error == ErrorKind.BAD_STATUS:
            return self.server_errors and 500 <= status < 600
        return error in self.kinds

    def backoff_before(self, retry: int, draw: random.Random) -> int:
        """The wait before retry number ``retry`` (1 the first), in ns."""
        if self.backoff == "none":
            return 0
        ceiling = min(BACKOFF_CAP_NS, self.backoff_ns << min(retry - 1, 30))
        if self.backoff == "exponential":
            return ceiling
        return round(draw.random() * ceiling)  # full jitter (AWS Architecture Blog, 2015)


@dataclass(frozen=True, kw_only=True)
class WebSocketPlan:
    """What a WebSocket run sends: one message, again and again, on upgraded connections."""

    uri: str  # ws://host:port/path, for the handshake's Host and request target
    payload: bytes
    text: bool  # a text frame (else binary)
    compression: bool  # offer permessage-deflate
    max_message_bytes: int = 1024 * 1024  # a larger message from the server fails its request


@dataclass(frozen=True, kw_only=True)
class TlsPlan:
    """How an https:// or wss:// run's connections speak TLS (lab.engine.secure)."""

    server_hostname: str  # the name the server's certificate must carry, sent as SNI
    insecure: bool = False  # accept any certificate
    ca_file: str = ""  # trust this CA alone ("": the lab's CA and the system's)
    resume: bool = False  # offer the session of an earlier connection on each new one


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
    connect_before: bool = True  # open every lane before the run starts (else at its first send)
    think_ns: int = 0  # closed loop: mean pause between an answer and the next request
    websocket: WebSocketPlan | None = None  # set: each request is a message on a WebSocket
    tls: TlsPlan | None = None  # set: every connection speaks TLS
    # open loop in stages (lab.engine.stages): this worker sends every ``workers``-th request
    # of the one schedule, starting with request ``worker``
    stages: tuple[Stage, ...] = ()
    worker: int = 0
    workers: int = 1
    retry: RetryPolicy | None = None  # set when retries or a per-request deadline are asked for

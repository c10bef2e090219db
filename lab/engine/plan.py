"""What one generator process is asked to do: the plan its engine and lanes follow.

Below both the engines (lab.engine.core) and the lanes (lab.engine.lane and the lane types),
so that neither has to import the other to know it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.engine.stages import Stage


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

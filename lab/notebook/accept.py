"""The accept-queue lesson's tools: a server that stops accepting, and a burst of connects.

A listener's kernel completes handshakes by itself and queues the connections until the
server calls accept(). A server whose event loop is busy does not call it, so a burst of new
connections fills the queue; once it is full Linux drops further SYNs (and the handshake's
last ACK), and the clients' kernels send their SYN again after 1 s, then 2 s more (3 s in all),
then 4 s more (7 s) -- or, since Linux 6.5, every second for the first four tries: connect
times cluster at those values (``syn_retry_seconds``). Everything here is bounded by a
count and a timeout and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lab.errors import ConfigError
from lab.notebook.probes import get_request, loopback_target

SYSCTL = Path("/proc/sys/net")
NETSTAT = Path("/proc/net/netstat")  # what nstat reads: TcpExt counters of this namespace
MAX_WORK_MS = 1000  # the /work route's longest single request (lab.http.demo_routes)
MAX_BURST = 2000


def block_server_loop(url: str, milliseconds: int) -> socket.socket:
    """Keep the lab server at ``url`` from accepting for about ``milliseconds``.

    Pipelined ``/work`` requests on one connection (each at most 1 s) hold its event loop busy
    back to back: the loop cannot run its accept callback meanwhile, as with any long
    CPU-bound handler. Returns the connection; close it when done (the answers are not read).
    """
    if not 0 < milliseconds <= 10 * MAX_WORK_MS:
        raise ConfigError("milliseconds", f"must be from 1 to {10 * MAX_WORK_MS}, got {milliseconds}")
    target = loopback_target(url)
    pieces = [MAX_WORK_MS] * (milliseconds // MAX_WORK_MS)
    if milliseconds % MAX_WORK_MS:
        pieces.append(milliseconds % MAX_WORK_MS)
    requests = b"".join(get_request(target, path=f"/work/{piece * 1000}") for piece in pieces)
    sock = socket.create_connection((target.host, target.port), timeout=5)
    sock.sendall(requests)
    return sock


@dataclass(frozen=True)
class BurstConnection:
    """One connection of a burst, timed from the moment its connect() began."""

    connect_ms: float  # until the client's kernel saw the handshake complete (nan: never)
    answer_ms: float  # until the answer's first byte (nan: no answer)
    outcome: Literal["answered", "refused", "reset", "timeout"]


async def connect_burst(url: str, count: int, *, timeout_seconds: float = 5.0) -> list[BurstConnection]:
    """Open ``count`` connections at once, send one GET on each, time connect and answer.

    A connection whose SYN is dropped is retried by the client's kernel (1 s, 3 s, 7 s after
    the first); one whose last handshake ACK is dropped looks connected to the client at once
    and waits instead for its answer. ``timeout_seconds`` bounds each connection's whole life.
    """
    if not 1 <= count <= MAX_BURST:
        raise ConfigError("count", f"must be from 1 to {MAX_BURST}, got {count}")
    target = loopback_target(url)
    request = get_request(target, close=True)
    return list(await asyncio.gather(*(
        _one_connection(target.host, target.port, request, timeout_seconds) for _ in range(count))))


async def _one_connection(host: str, port: int, request: bytes, timeout_seconds: float) -> BurstConnection:
    began = time.perf_counter()
    connect_ms = answer_ms = float("nan")
    try:
        async with asyncio.timeout(timeout_seconds):
            reader, writer = await asyncio.open_connection(host, port)
            connect_ms = (time.perf_counter() - began) * 1000
            try:
                writer.write(request)
                if not await reader.read(1):
                    return BurstConnection(connect_ms, answer_ms, "reset")
                answer_ms = (time.perf_counter() - began) * 1000
            finally:
                writer.close()
    except ConnectionRefusedError:
        return BurstConnection(connect_ms, answer_ms, "refused")
    except ConnectionResetError:
        return BurstConnection(connect_ms, answer_ms, "reset")
    except TimeoutError:
        return BurstConnection(connect_ms, answer_ms, "timeout")
    return BurstConnection(connect_ms, answer_ms, "answered")


def sysctl(name: str, default: int | None = None) -> int | None:
    """A numeric sysctl, e.g. ``sysctl("core.somaxconn")``; ``default`` when the kernel has none."""
    try:
        return int((SYSCTL / name.replace(".", "/")).read_text().split()[0])
    except FileNotFoundError:
        return default


def netstat_counters() -> dict[str, int]:
    """This namespace's ``TcpExt`` counters under nstat's names (``TcpExtSyncookiesSent``...).

    /proc/net/netstat holds them as pairs of lines, a header of names and a line of values,
    each starting with its group; nstat prefixes every name with its group. They count for the
    whole namespace since boot: take the difference around an experiment.
    """
    counters: dict[str, int] = {}
    lines = NETSTAT.read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        group, *keys = names.split()
        counters.update({f"{group.rstrip(':')}{key}": int(value)
                         for key, value in zip(keys, values.split()[1:], strict=True)})
    return counters


def syn_retry_seconds(count: int = 6) -> list[float]:
    """When a client's kernel sends its SYN again, in seconds after the first (cumulative).

    The first retransmission timeout is 1 s (RFC 6298) and doubles after each try: 1, 3, 7,
    15 s. Linux 6.5 made the first ``tcp_syn_linear_timeouts`` (default 4) tries linear, as
    macOS does: 1, 2, 3, 4, 5, then 7, 11 s. The schedule follows this kernel's sysctl.
    """
    linear = sysctl("ipv4.tcp_syn_linear_timeouts", default=0) or 0
    times, timeout, elapsed = [], 1.0, 0.0
    for attempt in range(count):
        elapsed += timeout
        times.append(elapsed)
        if attempt >= linear:
            timeout *= 2
    return times


__all__ = ["BurstConnection", "block_server_loop", "connect_burst", "netstat_counters",
           "syn_retry_seconds", "sysctl"]

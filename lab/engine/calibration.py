"""How much latency does the generator itself add? Measure it against a trivial responder.

The responder (its own process) answers every request head with the same 38 bytes at once.
Against it, two clients take turns over one keep-alive connection each:

- a bare blocking-socket loop (``sendall`` then ``recv`` until the known length) -- the least
  a Python client can do for a request; and
- the generator's engine (uvloop, llhttp, one row per request), one connection, closed loop.

The difference of their percentiles is what the generator adds to every latency it reports
(event-loop turns, parsing, recording). It also includes the loopback and responder cost
only once each, since both clients pay those. When the whole generator is pinned to one core
the responder shares that core; the figure is then a little pessimistic.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from time import perf_counter_ns
from typing import Any

import numpy as np
import uvloop

from lab.engine.core import make_engine
from lab.engine.http_lane import HttpLane
from lab.engine.plan import EnginePlan
from lab.measure.samples import ErrorKind
from lab.measure.stats import percentile
from lab.resources import ProcessContext, context_for
from lab.units import NS_PER_S, NS_PER_US

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
REQUEST_TEMPLATE = "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
DEFAULT_REQUESTS = 3000
WARMUP_REQUESTS = 300


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Per-request latency of a bare socket loop and of the generator, same responder."""

    requests: int
    baseline_p50_us: float
    baseline_p99_us: float
    generator_p50_us: float
    generator_p99_us: float
    added_p50_us: float  # generator minus baseline: the generator's own cost per request
    added_p99_us: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the responder ----------------------------------------------------------------------------

class _Responder(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        data = self.pending + data
        answers = data.count(b"\r\n\r\n")
        self.pending = data[data.rfind(b"\r\n\r\n") + 4:] if answers else data
        if answers:
            self.transport.write(RESPONSE * answers)  # type: ignore[attr-defined]


def responder_main(port_channel: Connection) -> None:
    """Process entry: serve on a free loopback port, send the port, run until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Responder, "127.0.0.1", 0)
        port_channel.send(server.sockets[0].getsockname()[1])
        closed = asyncio.Event()
        loop.add_reader(port_channel.fileno(), closed.set)  # parent closes its end: we stop
        await closed.wait()
        server.close()
    uvloop.run(serve())


# --- the two clients --------------------------------------------------------------------------

def baseline_latencies(port: int, requests: int) -> np.ndarray:
    request = REQUEST_TEMPLATE.format(port=port).encode()
    latencies = np.empty(requests, dtype=np.int64)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(WARMUP_REQUESTS + requests):
            began = perf_counter_ns()
            sock.sendall(request)
            received = 0
            while received < len(RESPONSE):
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the calibration responder closed the connection")
                received += len(chunk)
            if index >= WARMUP_REQUESTS:
                latencies[index - WARMUP_REQUESTS] = perf_counter_ns() - began
    return latencies


def generator_latencies(port: int, requests: int) -> np.ndarray:
    plan = EnginePlan(host="127.0.0.1", port=port, requests=(REQUEST_TEMPLATE.format(port=port).encode(),),
                      method="GET", mode="closed", connections=1, rate=None, offset_ns=0,
                      duration_ns=60 * NS_PER_S, max_requests=WARMUP_REQUESTS + requests,
                      timeout_ns=5 * NS_PER_S, keepalive=True)
    engine = make_engine(plan, HttpLane)

    async def run() -> None:
        await engine.connect()
        await engine.run(perf_counter_ns())

    uvloop.run(run())
    samples = engine.recorder.samples(0)[WARMUP_REQUESTS:]
    if np.any(samples["error"] != ErrorKind.NONE):
        raise ConnectionError("the generator saw errors against the calibration responder")
    return np.asarray(samples["done_ns"] - samples["sent_ns"], dtype=np.int64)


def measure(port: int, requests: int = DEFAULT_REQUESTS) -> Calibration:
    baseline = baseline_latencies(port, requests)
    generator = generator_latencies(port, requests)
    figures = {
        "baseline_p50_us": percentile(baseline, 50) / NS_PER_US,
        "baseline_p99_us": percentile(baseline, 99) / NS_PER_US,
        "generator_p50_us": percentile(generator, 50) / NS_PER_US,
        "generator_p99_us": percentile(generator, 99) / NS_PER_US,
    }
    return Calibration(requests=requests, **figures,
                       added_p50_us=figures["generator_p50_us"] - figures["baseline_p50_us"],
                       added_p99_us=figures["generator_p99_us"] - figures["baseline_p99_us"])


def calibration_main(start_method: str, requests: int, result_channel: Connection,
                     barrier: Any = None) -> None:
    """Process entry: start a responder, measure, send the :class:`Calibration` (or the error
    text) back, then release the load workers waiting on ``barrier``, if any."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the parent
    context = context_for(start_method)
    # Duplex: a socket pair, so the responder sees EOF when this end closes.
    receiver, sender = context.Pipe(duplex=True)
    responder = context.Process(target=responder_main, args=(sender,), name="loadgen-responder",
                                daemon=True)
    try:
        responder.start()
        sender.close()
        if not receiver.poll(30):
            raise TimeoutError("the calibration responder did not start")
        result: Calibration | str = measure(receiver.recv(), requests)
    except Exception as error:
        result = f"calibration failed: {type(error).__name__}: {error}"
    finally:
        receiver.close()  # the responder sees EOF and stops
        responder.join(5)
        if responder.is_alive():
            responder.kill()
    result_channel.send(result)
    result_channel.close()
    if barrier is not None:
        barrier.wait()


def start_calibration(context: ProcessContext, requests: int = DEFAULT_REQUESTS,
                      barrier: Any = None) -> tuple[Any, Connection]:
    receiver, sender = context.Pipe(duplex=False)
    # Not a daemon: it starts the responder, and daemonic processes may not have children.
    process = context.Process(target=calibration_main,
                              args=(context.get_start_method(), requests, sender, barrier),
                              name="loadgen-calibration", daemon=False)
    process.start()
    sender.close()
    return process, receiver



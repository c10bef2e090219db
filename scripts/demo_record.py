"""Make an experiment record from a real run, until ``python -m lab bench --save`` exists.

Starts a trivial HTTP/1.1 responder (asyncio, keep-alive, optionally freezing its loop now and
then as a GC pause would) in a separate process on 127.0.0.1, times real requests to it with a
small asyncio client in this process, and saves the samples as a record::

    .venv/bin/python scripts/demo_record.py --name stall-demo --rate 2000 --duration 3 \
        --stall-every 1 --stall-ms 50

This is a stand-in, not the lab's load generator: it is simple on purpose, and the tests use
it to produce real samples. Once the bench command saves records this file can go.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.measure.samples import MISSING, SAMPLE_DTYPE, ErrorKind, merge

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: latency-lab-demo\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"
REQUEST_TIMEOUT_S = 5.0


# --- the responder (runs in its own process) ------------------------------------------------

async def serve(port: int, stall_every_s: float | None, stall_ms: float) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, HOST, port)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    if stall_every_s:
        asyncio.get_running_loop().create_task(_stall(stall_every_s, stall_ms))
    async with server:
        await server.serve_forever()


async def _stall(every_s: float, stall_ms: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        time.sleep(stall_ms / 1000)  # blocks the whole loop on purpose: a "GC pause"


@contextlib.contextmanager
def responder(*, stall_every_s: float | None = None, stall_ms: float = 0.0) -> Iterator[int]:
    """Run the responder in a child process; yields its port."""
    command = [sys.executable, __file__, "serve", "--stall-ms", str(stall_ms)]
    if stall_every_s:
        command += ["--stall-every", str(stall_every_s)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("port "):
            raise RuntimeError(f"the responder did not start (said {line!r})")
        yield int(line.split()[1])
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- the client -----------------------------------------------------------------------------

@dataclass
class Schedule:
    """Open loop: request k is due at start + k/rate. Closed loop (rate None): as fast as answered."""

    start_ns: int
    end_ns: int
    rate_per_s: float | None
    issued: int = 0

    def next_due(self) -> int | None:
        if self.rate_per_s is None:
            return MISSING if time.perf_counter_ns() < self.end_ns else None
        due = self.start_ns + round(self.issued * 1e9 / self.rate_per_s)
        if due >= self.end_ns:
            return None
        self.issued += 1
        return due


async def _connection(port: int, schedule: Schedule, worker: int) -> np.ndarray:
    rows: list[tuple[int, ...]] = []
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while (intended := schedule.next_due()) is not None:
        if intended != MISSING:
            await asyncio.sleep(max(0, intended - time.perf_counter_ns()) / 1e9)
        connect_ns = MISSING
        sent = first = MISSING
        status, received, error = 0, 0, ErrorKind.NONE
        try:
            if writer is None:
                began = time.perf_counter_ns()
                reader, writer = await asyncio.open_connection(HOST, port)
                connect_ns = time.perf_counter_ns() - began
            assert reader is not None
            sent = time.perf_counter_ns()
            writer.write(REQUEST)
            status, received, first = await asyncio.wait_for(_response(reader), REQUEST_TIMEOUT_S)
            if status >= 400:
                error = ErrorKind.BAD_STATUS
        except ConnectionRefusedError:
            error = ErrorKind.CONNECT_REFUSED
        except ConnectionResetError:
            error = ErrorKind.RESET
        except asyncio.IncompleteReadError:
            error = ErrorKind.CLOSED_BY_SERVER
        except TimeoutError:
            error = ErrorKind.TIMEOUT
        except (OSError, ValueError):
            error = ErrorKind.OTHER
        done = time.perf_counter_ns()
        if error not in (ErrorKind.NONE, ErrorKind.BAD_STATUS) and writer is not None:
            writer.close()
            reader = writer = None
        rows.append((intended, sent if sent != MISSING else done, connect_ns, first, done,
                     status, received, int(error), MISSING, MISSING, worker, 0))  # plain HTTP, first attempts
    if writer is not None:
        writer.close()
    return np.array(rows, dtype=SAMPLE_DTYPE)


async def _response(reader: asyncio.StreamReader) -> tuple[int, int, int]:
    first_byte = await reader.readexactly(1)
    first_ns = time.perf_counter_ns()
    head = first_byte + await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return status, len(head) + len(body), first_ns


async def time_requests(port: int, *, connections: int, duration_s: float,
                        rate_per_s: float | None) -> np.ndarray:
    """Time real requests for ``duration_s``; open loop at ``rate_per_s``, else closed loop."""
    start = time.perf_counter_ns()
    schedule = Schedule(start, start + round(duration_s * 1e9), rate_per_s)
    parts = await asyncio.gather(*(_connection(port, schedule, worker)
                                   for worker in range(connections)))
    return merge(list(parts))


def load_spec(*, connections: int, duration_s: float, rate_per_s: float | None) -> dict[str, object]:
    return {"mode": "open" if rate_per_s else "closed", "connections": connections,
            "duration_seconds": duration_s, "rate": rate_per_s, "url": "http://127.0.0.1/",
            "generator": "scripts/demo_record.py"}


def responder_config(stall_every_s: float | None, stall_ms: float) -> dict[str, object]:
    return {"server": "scripts/demo_record.py responder (asyncio)", "keepalive": True,
            "stall_every_seconds": stall_every_s, "stall_ms": stall_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("run", "serve"), default="run")
    parser.add_argument("--name", default="demo")
    parser.add_argument("--notes", default="")
    parser.add_argument("--rate", type=float, default=None, help="requests/s (open loop); omit for closed")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds (at most 60)")
    parser.add_argument("--stall-every", type=float, default=None, help="seconds between loop freezes")
    parser.add_argument("--stall-ms", type=float, default=0.0)
    arguments = parser.parse_args(argv)
    if arguments.mode == "serve":
        asyncio.run(serve(0, arguments.stall_every, arguments.stall_ms))
        return 0
    from lab.records.store import save_run

    duration = min(arguments.duration, 60.0)  # every run is bounded
    with responder(stall_every_s=arguments.stall_every, stall_ms=arguments.stall_ms) as port:
        from lab.records.environment import utc_now
        started = utc_now()
        samples = asyncio.run(time_requests(port, connections=arguments.connections,
                                            duration_s=duration, rate_per_s=arguments.rate))
    record = save_run(
        samples=samples, name=arguments.name, notes=arguments.notes, event_loop="asyncio",
        started_at=started,
        load_spec=load_spec(connections=arguments.connections, duration_s=duration,
                            rate_per_s=arguments.rate),
        server_config=responder_config(arguments.stall_every, arguments.stall_ms))
    print(f"saved {record.id} ({record.name}): {record.summary.requests} requests, "
          f"p99 {record.summary.latency.p99:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

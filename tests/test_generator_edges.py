"""The generator's edges: timeouts that hold whatever their length, runs the user stopped, and
servers that answer with what no server should (issues 22 and 23).

Hostile servers are small raw asyncio servers on 127.0.0.1 (tests/hostile_servers.py); every
run against one must end within its duration, its timeout and a generous start-up allowance,
with its errors counted by kind.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hostile_servers import (
    accept_websocket,
    hostile_server,
    read_client_frame,
    server_frame,
)

from lab.engine.core import make_engine
from lab.engine.plan import EnginePlan
from lab.engine.response import response_parser
from lab.engine.worker import lane_type_for
from lab.http.config import ServerConfig
from lab.loadgen import LoadSpec, run_load
from lab.measure.samples import ErrorKind
from lab.server import ServerHandle, start_server
from lab.units import NS_PER_MS

TEXT = 0x1


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with start_server(ServerConfig(), isolation="process") as handle:
        yield handle


def bench(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "bench", *argv], capture_output=True,
                          text=True, timeout=timeout)


# --- timeouts shorter than the housekeeping tick ----------------------------------------------

async def echo_after_20_ms(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A WebSocket echo that answers each message 20 ms late."""
    await accept_websocket(reader, writer)
    while True:
        opcode, payload = await read_client_frame(reader)
        await asyncio.sleep(0.02)
        writer.write(server_frame(opcode, payload))


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass


def test_a_5_ms_timeout_against_20_ms_answers_counts_every_request_as_a_timeout_and_exits_3(
        server: ServerHandle) -> None:
    done = bench(server.url + "/delay/20", "-d", "1", "-c", "5", "--timeout", "5ms", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 3, done.stderr
    assert report["status_codes"] == {} and report["requests"] > 0
    assert report["errors"] == {"timeout": report["requests"]}


@pytest.mark.parametrize("load", [{"mode": "closed"}, {"mode": "closed", "keepalive": False},
                                  {"mode": "open", "rate": 200}],
                         ids=["closed", "closed-new-connections", "open"])
def test_a_late_http_answer_is_a_timeout_in_every_load_model(server: ServerHandle,
                                                            load: dict[str, Any]) -> None:
    result = run_load(LoadSpec(url=server.url + "/delay/20", connections=4, duration_seconds=0.6,
                               timeout_seconds=0.005, **load))
    assert result.requests > 0
    assert result.summary.status_codes == {}
    assert result.errors == {"timeout": result.requests}


@pytest.mark.parametrize("load", [{"mode": "closed"}, {"mode": "open", "rate": 200}],
                         ids=["closed", "open"])
def test_a_late_websocket_echo_is_a_timeout(load: dict[str, Any]) -> None:
    with hostile_server(echo_after_20_ms) as slow:
        result = run_load(LoadSpec(url=slow.ws_url, connections=4, duration_seconds=0.6,
                                   timeout_seconds=0.005, **load))
    assert result.requests > 0
    assert result.summary.status_codes == {}
    assert result.errors == {"timeout": result.requests}


class SilentTransport(asyncio.Transport):
    """Takes writes and sends nothing: a lane fed its answers by hand."""

    def write(self, data: Any) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"


@pytest.mark.parametrize("late_ms", [0, 30])
def test_an_answer_complete_after_its_timeout_is_a_timeout_whatever_the_timers_did(late_ms: int) -> None:
    # The expiry timer and the answer can be ready in the same turn of the loop, the answer
    # read first (or the loop busy past the deadline): the answer decides, by its own clock.
    plan = EnginePlan(host="127.0.0.1", port=1, requests=(b"GET / HTTP/1.1\r\n\r\n",), method="GET",
                      mode="closed", connections=1, rate=None, offset_ns=0, duration_ns=10**12,
                      max_requests=None, timeout_ns=20 * NS_PER_MS, keepalive=True)
    engine = make_engine(plan, lane_type_for(plan))
    lane: Any = engine.lanes[0]
    lane.transport = SilentTransport()
    lane.parser = response_parser(lane, method="GET")
    lane.busy = True
    lane.sent_ns = lane.begun_ns = time.perf_counter_ns() - (late_ms + 1) * NS_PER_MS
    lane.on_data(ANSWER)
    row = engine.recorder.samples(0)[0]
    if late_ms:
        assert (row["error"], row["status"]) == (ErrorKind.TIMEOUT, 0) and engine.errors == 1
        assert lane.transport is None  # its connection let go of, as an expired request's
    else:
        assert (row["error"], row["status"]) == (ErrorKind.NONE, 200) and engine.errors == 0


@pytest.mark.timing
def test_a_timeout_fires_at_its_deadline_not_at_the_next_housekeeping_tick() -> None:
    # The housekeeping tick is 50 ms: a 5 ms timeout enforced there fires about 50 ms after
    # the send (each new request begins just after the tick that expired the last one).
    with hostile_server(never_answer) as silent:
        result = run_load(LoadSpec(url=silent.url + "/", connections=2, duration_seconds=1,
                                   timeout_seconds=0.005))
    samples = result.samples
    assert np.all(samples["error"] == ErrorKind.TIMEOUT) and samples.size > 20
    waited_ms = (samples["done_ns"] - samples["sent_ns"]) / NS_PER_MS
    assert np.all(waited_ms >= 5)
    assert np.median(waited_ms) < 25, np.percentile(waited_ms, [50, 90, 99])

"""The generator's edges: timeouts that hold whatever their length, runs the user stopped, and
servers that answer with what no server should (issues 22 and 23).

Hostile servers are small raw asyncio servers on 127.0.0.1 (tests/hostile_servers.py); every
run against one must end within its duration, its timeout and a generous start-up allowance,
with its errors counted by kind.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hostile_servers import (
    CountingResponder,
    accept_websocket,
    hostile_server,
    read_client_frame,
    read_head,
    server_frame,
)

from lab.cli.records import describe
from lab.engine.core import make_engine
from lab.engine.plan import EnginePlan
from lab.engine.response import response_parser
from lab.engine.run import follow_to_end
from lab.engine.worker import lane_type_for
from lab.errors import ConfigError
from lab.http.config import ServerConfig
from lab.loadgen import LoadSpec, run_load, start_load
from lab.measure.samples import ErrorKind
from lab.measure.thresholds import Outcome
from lab.notebook.panel import LabPanel
from lab.notebook.widgets import KnobForm
from lab.options import as_dict
from lab.records.store import RecordStore
from lab.server import ServerHandle, start_server
from lab.units import NS_PER_MS, NS_PER_S

PING = 0x9


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


# --- hostile servers: every run ends within its bounds, its errors counted by kind ------------

HUGE_LENGTH_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"
HOLD_SECONDS = 3600.0
DURATION_SECONDS = 1.0
TIMEOUT_SECONDS = 1.0
START_UP_ALLOWANCE_SECONDS = 3.0  # worker processes on a machine others keep busy


async def huge_length_then_hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(HUGE_LENGTH_HEAD)
    await asyncio.sleep(HOLD_SECONDS)


async def head_that_never_ends(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\n")
    while True:
        writer.write(b"X-More: yes\r\n" * 100)
        await writer.drain()
        await asyncio.sleep(0.001)


async def chunks_that_never_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        writer.write(b"1000\r\n" + b"x" * 0x1000 + b"\r\n")
        await writer.drain()


async def body_flooded_past_any_timeout(reader: asyncio.StreamReader,
                                       writer: asyncio.StreamWriter) -> None:
    """A length the generator can hold (a terabyte), then bytes as fast as it reads them."""
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n")
    while True:
        writer.write(b"x" * 65536)
        await writer.drain()


async def body_a_byte_a_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    while True:
        await asyncio.sleep(1)
        writer.write(b"x")


async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(HOLD_SECONDS)


async def ping_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Empty pings as fast as the socket takes them: two bytes each, never a message."""
    await accept_websocket(reader, writer)
    pings = server_frame(PING) * 1000
    while True:
        writer.write(pings)
        await writer.drain()


async def upgrade_that_never_ends(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 101 whose head goes on for ever, a line every millisecond."""
    await read_head(reader)
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
    while True:
        writer.write(b"X-More: yes\r\n")
        await writer.drain()
        await asyncio.sleep(0.001)


async def upgraded_then_deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the upgrade, then never reads nor writes again."""
    await accept_websocket(reader, writer)
    await asyncio.sleep(HOLD_SECONDS)


async def echo_twice_as_long(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each message with one of 2,000 bytes (a 16-bit length, RFC 6455 section 5.2)."""
    await accept_websocket(reader, writer)
    while True:
        opcode, _ = await read_client_frame(reader)
        writer.write(bytes((0x80 | opcode, 126)) + (2000).to_bytes(2, "big") + b"y" * 2000)


def timed_run(spec: LoadSpec) -> tuple[Any, float]:
    began = time.monotonic()
    result = run_load(spec)
    return result, time.monotonic() - began


@pytest.mark.timing
@pytest.mark.parametrize(("handle", "kind"), [
    (huge_length_then_hold, "malformed"),
    (head_that_never_ends, "timeout"),
    (chunks_that_never_end, "timeout"),
    (body_flooded_past_any_timeout, "timeout"),
    (body_a_byte_a_second, "timeout"),
    (never_read, "timeout"),
], ids=["content-length-past-any-integer", "endless-head", "endless-chunks", "terabyte-body", "trickled-body",
        "never-reads"])
def test_a_hostile_http_server_cannot_stretch_a_run(handle: Any, kind: str) -> None:
    with hostile_server(handle) as hostile:
        result, took = timed_run(LoadSpec(url=hostile.url + "/", connections=4,
                                          duration_seconds=DURATION_SECONDS,
                                          timeout_seconds=TIMEOUT_SECONDS))
    assert took < DURATION_SECONDS + TIMEOUT_SECONDS + START_UP_ALLOWANCE_SECONDS
    assert result.requests > 0 and result.errors == {kind: result.requests}


def worker_rss_bytes(pids: tuple[int, ...]) -> int:
    total = 0
    for pid in pids:
        try:
            status = open(f"/proc/{pid}/status").read()  # noqa: SIM115 -- read whole at once
        except OSError:
            continue  # already gone
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines()
                       if line.startswith("VmRSS:")), 0)
    return total


@pytest.mark.timing
def test_a_ping_flood_ends_on_time_counted_as_too_large_with_the_memory_bounded() -> None:
    with hostile_server(ping_flood) as hostile:
        spec = LoadSpec(url=hostile.ws_url, connections=4, duration_seconds=2,
                        timeout_seconds=TIMEOUT_SECONDS)
        began = time.monotonic()
        run = start_load(spec)
        largest = baseline = 0
        while not run.done():
            rss = worker_rss_bytes(run.pids)
            baseline = baseline or rss
            largest = max(largest, rss)
            run.join(0.1)
        result = run.result()
        took = time.monotonic() - began
    assert took < 2 + TIMEOUT_SECONDS + START_UP_ALLOWANCE_SECONDS
    assert result.requests > 0 and result.errors == {"too_large": result.requests}
    # Before the flood was bounded, the generator grew by some 250 MB in a run like this one.
    assert largest - baseline < 50 * 2**20, (baseline, largest)


@pytest.mark.timing
@pytest.mark.parametrize("handle", [upgrade_that_never_ends, upgraded_then_deaf],
                         ids=["endless-upgrade", "deaf-after-upgrade"])
def test_a_hostile_websocket_server_cannot_stretch_a_run(handle: Any) -> None:
    # The default 5 s timeout: the connections opened before the run must not wait for all
    # of it (and the run's last requests for all of it again).
    timeout = 5.0
    with hostile_server(handle) as hostile:
        began_ns = time.perf_counter_ns()
        result, took = timed_run(LoadSpec(url=hostile.ws_url, connections=4,
                                          duration_seconds=DURATION_SECONDS, timeout_seconds=timeout))
    assert (result.start_ns - began_ns) / NS_PER_S < START_UP_ALLOWANCE_SECONDS + 1
    assert took < DURATION_SECONDS + timeout + START_UP_ALLOWANCE_SECONDS
    assert result.requests > 0 and result.errors == {"timeout": result.requests}


def test_a_websocket_message_over_the_limit_fails_its_request_as_too_large() -> None:
    with hostile_server(echo_twice_as_long) as hostile:
        small = run_load(LoadSpec(url=hostile.ws_url, connections=1, max_requests=20,
                                  message_bytes=16, max_message_bytes=1000))
        roomy = run_load(LoadSpec(url=hostile.ws_url, connections=1, max_requests=20,
                                  message_bytes=16, max_message_bytes=4000))
    assert small.errors == {"too_large": 20}
    assert roomy.errors == {} and roomy.summary.status_codes == {"101": 20}


def test_the_message_limit_is_a_knob_of_the_cli_api_and_record() -> None:
    with pytest.raises(ConfigError, match="max_message_bytes"):
        LoadSpec(url="ws://127.0.0.1:1/ws/echo", message_bytes=2000, max_message_bytes=1000)
    done = bench("ws://127.0.0.1:1/ws/echo", "--message-bytes", "2000", "--max-message-bytes", "1000")
    assert done.returncode == 2 and "max_message_bytes" in done.stderr.replace("-", "_")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert as_dict(LoadSpec(url="ws://127.0.0.1:1/ws/echo"))["max_message_bytes"] == 2**20


# --- a run stopped by its owner is "stopped", not passed ---------------------------------------

def interruptible() -> None:
    """In the child: take SIGINT as a terminal delivers it. A suite started in the background by
    a non-interactive shell ignores SIGINT, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_bench_with_outcome_stopped_exit_130_and_the_measured_duration_saved(
        stop_signal: signal.Signals, tmp_path: Path) -> None:
    responder = CountingResponder()
    with hostile_server(responder) as polite:
        running = subprocess.Popen(
            [sys.executable, "-m", "lab", "bench", polite.url + "/", "-d", "3600", "-c", "2", "--json",
             "--save", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, preexec_fn=interruptible)
        try:
            assert responder.first_request.wait(60), "the run never started"
            time.sleep(0.5)
            running.send_signal(stop_signal)
            out, err = running.communicate(timeout=60)
        finally:
            running.kill()
    assert running.returncode == 130, err
    report = json.loads(out)
    assert report["outcome"] == "stopped" and report["exit_code"] == 130 and report["requests"] > 0
    assert report["stopped_early"] is True and 0 < report["measured_duration_seconds"] < 60
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("lab: stopped before its end"), err
    saved = next(path for path in tmp_path.iterdir() if (path / "record.json").exists())
    document = json.loads((saved / "record.json").read_text())
    assert document["load_spec"]["duration_seconds"] == 3600  # as asked
    assert 0 < document["measured_duration_seconds"] < 60
    record = RecordStore(tmp_path).load("latest")
    assert record.verdict()[0] is Outcome.STOPPED
    listing = RecordStore(tmp_path).runs()
    assert listing["measured_s"].iloc[0] == pytest.approx(document["measured_duration_seconds"])
    assert listing["duration_seconds"].iloc[0] == 3600
    assert "of the 3600 s asked -- stopped before its end" in describe(record)


def test_stop_from_the_api_is_stopped_and_a_run_let_finish_is_passed() -> None:
    responder = CountingResponder()
    with hostile_server(responder) as polite:
        run = start_load(LoadSpec(url=polite.url + "/", connections=2, duration_seconds=60))
        assert responder.first_request.wait(60)
        run.stop()
        stopped = run.result(timeout=30)
        finished = run_load(LoadSpec(url=polite.url + "/", connections=2, duration_seconds=0.3))
    assert stopped.verdict()[0] is Outcome.STOPPED and stopped.to_json_dict()["outcome"] == "stopped"
    assert stopped.outcome.measured_seconds < 30
    assert finished.verdict() == (Outcome.PASSED, None)
    assert finished.outcome.measured_seconds == pytest.approx(0.3, abs=0.05)


def test_the_panels_stop_makes_a_stopped_run_with_its_measured_duration(tmp_path: Path) -> None:
    panel = LabPanel(store=RecordStore(tmp_path / "data"), load={"connections": 2, "duration_seconds": 30})

    async def run_and_stop() -> Any:
        task = panel.start_run()
        assert task is not None, panel.message.value
        await asyncio.sleep(1.0)
        panel.stop_button.click()
        return await task

    try:
        record = asyncio.run(run_and_stop())
    finally:
        panel.close()
    assert record is not None and len(record.samples) > 0
    assert record.verdict()[0] is Outcome.STOPPED and int(Outcome.STOPPED) == 130
    assert "STOPPED" in panel.message.value and "stopped early" in panel.message.value
    metadata = record.metadata()
    assert metadata["load_spec"]["duration_seconds"] == 30
    assert 0 < metadata["measured_duration_seconds"] < 30


def test_the_header_says_what_bounds_the_run() -> None:
    responder = CountingResponder()
    with hostile_server(responder) as polite:
        done = bench(polite.url + "/", "--max-requests", "50", "-c", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("Running up to 50 requests (10s at most) @ ")


def test_a_run_stopped_because_it_would_not_end_is_incomplete_not_stopped_by_its_owner() -> None:
    responder = CountingResponder()
    with hostile_server(responder) as polite:
        run = start_load(LoadSpec(url=polite.url + "/", connections=2, duration_seconds=60))
        run.longest_seconds = lambda: 0.5  # type: ignore[method-assign]  # as if stuck
        result = follow_to_end(run, None, 0.1, stop_wait_seconds=30)
    outcome, reason = result.verdict()
    assert outcome is Outcome.INCOMPLETE and not result.stopped_early
    assert reason is not None and "did not end within 0.5 s" in reason


def test_the_panel_shows_the_message_limit_with_the_websocket_knobs() -> None:
    form = KnobForm(LoadSpec, LoadSpec(url="ws://127.0.0.1:1/ws/echo"))
    assert form.controls["max_message_bytes"].value_widget.value == 2**20


class RecordingLane:
    """A lane that only notes what it was asked to send (the engine's bookkeeping under test)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.busy = False
        self.sent: list[int] = []

    def send(self, intended_ns: int, attempt: int = 0) -> None:
        self.busy = True
        self.sent.append(intended_ns)

    def abandon(self) -> None:
        pass


def test_a_dispatcher_running_late_still_sends_every_request_due_before_the_deadline() -> None:
    # The housekeeping tick checks the deadline even when every lane is stuck; a dispatcher that
    # lagged (the loop busy past the deadline) had its due requests cut off there: 1,193 of 1,200.
    async def late_run() -> tuple[int, int]:
        plan = EnginePlan(host="127.0.0.1", port=1, requests=(b"GET / HTTP/1.1\r\n\r\n",),
                          method="GET", mode="open", connections=4, rate=1000.0, offset_ns=0,
                          duration_ns=100 * NS_PER_MS, max_requests=None,
                          timeout_ns=NS_PER_S, keepalive=True)
        engine: Any = make_engine(plan, RecordingLane)  # type: ignore[arg-type]
        engine._finished = asyncio.get_running_loop().create_future()
        engine._should_stop = lambda: False
        engine._on_housekeeping = lambda _engine: None
        engine.start_ns = time.perf_counter_ns() - 300 * NS_PER_MS  # the dispatcher never ran
        engine.deadline_ns = engine.start_ns + plan.duration_ns
        engine.idle = list(engine.lanes)
        engine.next_intended_ns = engine._intended(0)
        engine._housekeep()
        if engine._housekeeping is not None:  # the next tick, armed while requests are owed
            engine._housekeeping.cancel()
        return engine.started, len(engine.queue)

    started, queued = asyncio.run(late_run())
    assert started == 100 and queued == 96  # 100 due before the deadline: 4 lanes, 96 waiting

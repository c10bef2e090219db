"""Shared fixtures: lab servers on 127.0.0.1, real runs against a trivial responder,
synthetic samples for exact format checks, and a record store in a temporary folder."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from lab.measure.samples import ErrorKind, empty
from lab.records.record import Record
from lab.records.store import RecordStore
from lab.server import ServerHandle, start_server

# Python 3.14 makes forkserver the default start method on Linux. LAB_START_METHOD=forkserver
# forces it on the lab's processes (lab.resources.process_context); making it the default here
# too covers whatever else starts a process in the tests, as 3.14 will.
if os.environ.get("LAB_START_METHOD"):
    multiprocessing.set_start_method(os.environ["LAB_START_METHOD"], force=True)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop that is never run: the protocol tests feed connections bytes directly."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerHandle]]:
    """Start lab servers with given knobs; every one is stopped when the test ends."""
    started: list[ServerHandle] = []

    def make(**knobs: Any) -> ServerHandle:
        handle = start_server(**knobs)
        started.append(handle)
        return handle

    yield make
    for handle in started:
        handle.stop()


@pytest.fixture
def lab_server(make_server: Callable[..., ServerHandle]) -> Callable[..., ServerHandle]:
    """Start lab servers in processes of their own (off the test's GIL), stopped at the end."""
    return lambda **knobs: make_server(isolation="process", **knobs)


@pytest.fixture
def server(make_server: Callable[..., ServerHandle]) -> ServerHandle:
    """A lab server with default settings, in a background thread."""
    return make_server()


ROOT = Path(__file__).resolve().parent.parent
# When this test session began: what a record made during it must have started after.
SESSION_STARTED = dt.datetime.now(dt.UTC)


def _demo_module() -> ModuleType:
    """scripts/demo_record.py: the stand-in real run until the bench command saves records."""
    spec = importlib.util.spec_from_file_location("demo_record", ROOT / "scripts" / "demo_record.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_record"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demo() -> ModuleType:
    return _demo_module()


@pytest.fixture(scope="session")
def open_loop_run(demo: ModuleType) -> Record:
    """A real open-loop run (1000 requests/s for 0.8 s) against a responder whose loop freezes
    for 30 ms every 0.3 s, so corrected and uncorrected latency differ."""
    with demo.responder(stall_every_s=0.3, stall_ms=30) as port:
        samples = asyncio.run(demo.time_requests(port, connections=4, duration_s=0.8, rate_per_s=1000))
    return Record.create(samples=samples, name="open-stall", event_loop="asyncio",
                         load_spec=demo.load_spec(connections=4, duration_s=0.8, rate_per_s=1000),
                         server_config=demo.responder_config(0.3, 30))


@pytest.fixture(scope="session")
def closed_loop_run(demo: ModuleType) -> Record:
    """A real closed-loop run: 2 connections for 0.3 s, as fast as answered."""
    with demo.responder() as port:
        samples = asyncio.run(demo.time_requests(port, connections=2, duration_s=0.3, rate_per_s=None))
    return Record.create(samples=samples, name="closed", event_loop="asyncio",
                         load_spec=demo.load_spec(connections=2, duration_s=0.3, rate_per_s=None),
                         server_config=demo.responder_config(None, 0))


def synthetic_samples(count: int = 5000, *, seed: int = 7, open_loop: bool = True,
                      error_every: int = 250) -> np.ndarray:
    """Lognormal latencies (~0.2 ms median, long tail), a few errors and new connections."""
    rng = np.random.default_rng(seed)
    samples = empty(count)
    begin = 1_000_000_000_000
    schedule = begin + np.arange(count, dtype=np.int64) * 200_000  # 5000 requests/s
    samples["sent_ns"] = schedule + rng.integers(0, 50_000, count)
    if open_loop:
        samples["intended_ns"] = schedule
    latency = rng.lognormal(12.2, 0.6, count).astype(np.int64)
    samples["first_byte_ns"] = samples["sent_ns"] + latency * 9 // 10
    samples["done_ns"] = samples["sent_ns"] + latency
    samples["status"] = 200
    samples["response_bytes"] = 120
    samples["worker"] = np.arange(count) % 3
    samples["connect_ns"][::100] = rng.integers(30_000, 90_000, samples["connect_ns"][::100].size)
    failed = slice(error_every - 1, None, error_every)
    samples["error"][failed] = ErrorKind.TIMEOUT
    samples["first_byte_ns"][failed] = -1
    samples["status"][failed] = 0
    return samples


@pytest.fixture
def synthetic_record() -> Record:
    return Record.create(samples=synthetic_samples(), name="synthetic",
                         load_spec={"mode": "open", "rate": 5000, "connections": 3},
                         server_config={"nodelay": True, "keepalive": True}, notes="made up",
                         tags=["format-test"])


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    return RecordStore(tmp_path / "data")

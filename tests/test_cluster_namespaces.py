"""The multi-host path on one machine: a Dask worker in a network namespace of its own loads a
lab server in another, over veth pairs with benchmark-range addresses (198.18.0.0/15, set
aside for tests by RFC 2544) that this test makes and removes. The client and the scheduler
stay in the root namespace and reach the worker over a third link."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

import lab
from lab.engine.cluster import run_on_cluster

distributed = pytest.importorskip("distributed")

SERVER_ADDRESS, GENERATOR_TO_SERVER = "198.18.0.1", "198.18.0.2"
SCHEDULER_ADDRESS, GENERATOR_TO_SCHEDULER = "198.18.1.1", "198.18.1.2"
DASK = Path(sys.executable).with_name("dask")


def ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, timeout=10)


def can_make_namespaces() -> str | None:
    """None when this test can run here, else why not."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "no ip command (Debian's iproute2)"
    if not DASK.exists():
        return "no dask command in this environment"
    probe = f"lab-probe-{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as error:
        return f"cannot make a network namespace here: {error}"
    ip("netns", "delete", probe)
    return None


@contextmanager
def namespaces(tag: str) -> Iterator[tuple[str, str]]:
    """A server namespace and a generator namespace, linked to each other and the generator
    linked to the root namespace; everything is deleted on the way out."""
    server, generator = f"lab-srv-{tag}", f"lab-gen-{tag}"
    made: list[str] = []
    try:
        for name in (server, generator):
            ip("netns", "add", name)
            made.append(name)
        ip("link", "add", f"ls{tag}", "type", "veth", "peer", "name", f"lg{tag}")
        ip("link", "set", f"ls{tag}", "netns", server)
        ip("link", "set", f"lg{tag}", "netns", generator)
        ip("link", "add", f"lr{tag}", "type", "veth", "peer", "name", f"lh{tag}")
        ip("link", "set", f"lh{tag}", "netns", generator)
        _up(server, f"ls{tag}", f"{SERVER_ADDRESS}/30")
        _up(generator, f"lg{tag}", f"{GENERATOR_TO_SERVER}/30")
        _up(generator, f"lh{tag}", f"{GENERATOR_TO_SCHEDULER}/30")
        ip("addr", "add", f"{SCHEDULER_ADDRESS}/30", "dev", f"lr{tag}")
        ip("link", "set", f"lr{tag}", "up")
        yield server, generator
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "delete", f"lr{tag}"], capture_output=True, timeout=10)


def _up(namespace: str, device: str, address: str) -> None:
    ip("-n", namespace, "addr", "add", address, "dev", device)
    ip("-n", namespace, "link", "set", device, "up")
    ip("-n", namespace, "link", "set", "lo", "up")


def started(stack: ExitStack, command: list[str], ready: str, timeout: float = 30) -> subprocess.Popen[str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stack.callback(_stop, process)
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    for line in process.stdout:
        if ready in line:
            return process
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"{command[0]} did not print {ready!r} in time")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.skipif(can_make_namespaces() is not None, reason=str(can_make_namespaces()))
def test_a_worker_in_another_namespace_loads_a_server_in_a_third() -> None:
    tag = uuid.uuid4().hex[:5]
    with ExitStack() as stack:
        server_ns, generator_ns = stack.enter_context(namespaces(tag))
        started(stack, ["ip", "netns", "exec", server_ns, sys.executable, "-m", "lab", "serve",
                        "--host", SERVER_ADDRESS, "--port", "8080"], "listening on")
        started(stack, [str(DASK), "scheduler", "--host", SCHEDULER_ADDRESS, "--port", "8786",
                        "--dashboard-address", ":0", "--no-show"], "Scheduler at")
        started(stack, ["ip", "netns", "exec", generator_ns, str(DASK), "worker",
                        f"tcp://{SCHEDULER_ADDRESS}:8786", "--host", GENERATOR_TO_SCHEDULER,
                        "--nthreads", "1", "--no-dashboard"], "Registered to")
        client = stack.enter_context(distributed.Client(f"tcp://{SCHEDULER_ADDRESS}:8786", timeout=10))
        spec = lab.LoadSpec(url=f"http://{SERVER_ADDRESS}:8080/fast", connections=2,
                            duration_seconds=1, allow_remote=True)
        result = run_on_cluster(spec, client)
    assert result.errors == {}
    assert result.requests > 100
    [worker] = result.outcome.cluster["per_worker"]  # type: ignore[index]
    assert worker["worker"].startswith(f"tcp://{GENERATOR_TO_SCHEDULER}:")
    assert worker["requests"] == result.requests
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tag not in leftovers

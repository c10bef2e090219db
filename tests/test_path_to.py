"""An emulated path in front of a server the lab did not start (``python -m lab path ... --to``,
``lab.Path(...).to(...)``): the target's address forms and one-line mistakes, the round trip it
adds to a plain ``python -m http.server``, what crosses it intact, and that nothing of it (the
namespace, the devices, the relay) is left after Ctrl-C, SIGTERM or a SIGKILL of
its owner.

The timed tests' bounds: issue 24's for a server that answers in one write (uvicorn) at
delay=20ms, keep-alive p50 within 38-50 ms; and the server's own Nagle stall across the path
for one that does not (``python -m http.server``), p50 >= 100 ms.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Any

import numpy as np
import pytest

import lab
from lab.addresses import is_emulated_path
from lab.errors import ConfigError
from lab.netpath import Path, PathInFront, missing_privilege
from lab.netpath.front import parse_target
from lab.netpath.system import alive, lab_devices, lab_namespaces

REASON = missing_privilege()
needs_privilege = pytest.mark.skipif(REASON is not None, reason=f"emulated path: {REASON}")
LAB = [sys.executable, "-m", "lab"]
ONE_MEBIBYTE = 1 << 20


# --- the target (no privilege needed) -----------------------------------------------------

@pytest.mark.parametrize(("target", "expected"), [
    ("127.0.0.1:8000", ("127.0.0.1", 8000)),
    ("http://127.0.0.1:8000/", ("127.0.0.1", 8000)),
    ("localhost:81", ("localhost", 81)),
    ("[::1]:8000", ("::1", 8000)),
    ("8000", ("127.0.0.1", 8000)),
    (8000, ("127.0.0.1", 8000)),
    (("127.0.0.2", 9), ("127.0.0.2", 9)),
])
def test_a_target_is_written_as_a_loopback_host_and_port(target: str | int | tuple[str, int],
                                                         expected: tuple[str, int]) -> None:
    assert parse_target(target) == expected


@pytest.mark.parametrize(("target", "named"), [
    ("127.0.0.1", "is not HOST:PORT"),
    ("nonsense", "is not HOST:PORT"),
    ("127.0.0.1:99999", "is not HOST:PORT"),
    ("10.1.2.3:80", "10.1.2.3 is not a loopback address"),
    ("1234567890123", "is not HOST:PORT"),
    (("127.0.0.1", 0), "port 0 is out of range"),
])
def test_a_bad_target_is_one_line_naming_to(target: str | tuple[str, int], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_target(target)
    assert caught.value.option == "to"
    assert named in caught.value.message and "\n" not in str(caught.value)


def test_a_server_handle_is_a_target(make_server: object) -> None:
    server = lab.start_server()
    try:
        assert parse_target(server) == ("127.0.0.1", server.port)
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize(("words", "flag"), [
    (["delay=20ms rtt=5", "--to", "127.0.0.1:8000"], "PATH:"),
    (["delay=20ms", "--to", "192.0.2.1:80"], "--to:"),
    (["delay=20ms", "--to", "127.0.0.1"], "--to:"),
    (["delay=20ms", "--to", "127.0.0.1:8000", "--port", "0"], "--port:"),
])
def test_path_mistakes_are_one_line_naming_the_flag(words: list[str], flag: str) -> None:
    done = subprocess.run([*LAB, "path", *words], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"python -m lab path: error: {flag}")


@needs_privilege
def test_nothing_listening_at_the_target_is_one_line_naming_to() -> None:
    port = free_port()  # closed again: nothing listens there
    done = subprocess.run([*LAB, "path", "delay=20ms", "--to", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"python -m lab path: error: --to: nothing is listening on 127.0.0.1:{port}")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="drops CAP_NET_ADMIN from a root process with setpriv")
def test_without_the_privilege_path_says_what_is_missing_in_one_line() -> None:
    done = subprocess.run(["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
                           *LAB, "path", "delay=20ms", "--to", "127.0.0.1:8000"],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("lab: cannot build an emulated network path: needs root or CAP_NET_ADMIN")


# --- in front of a server the lab did not start -------------------------------------------

@pytest.fixture
def plain_server(tmp_path: FilePath) -> Iterator[int]:
    """``python -m http.server`` with keep-alive (HTTP/1.1), serving a 1 MiB file; its port."""
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * (ONE_MEBIBYTE // 256))
    (tmp_path / "small.txt").write_text("ok\n")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                                "127.0.0.1", "--protocol", "HTTP/1.1", "--directory", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def left_over() -> tuple[set[str], set[str], set[int]]:
    """The lab's namespaces and devices, and the relays running now."""
    helpers = set()
    for entry in FilePath("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"lab.netpath.relay" in command:
                helpers.add(int(entry.name))
    return set(lab_namespaces()), set(lab_devices()), helpers


def read_line(process: subprocess.Popen[str], wanted: str, timeout: float = 20) -> str:
    """The first line with ``wanted`` that the process prints (a thread reads: the lines may
    come in one write, and select() does not see what the text reader already buffered)."""
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: lines.put(process.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not reader.is_alive() and lines.empty():
            reader = threading.Thread(target=lambda: lines.put(process.stdout.readline()),  # type: ignore[union-attr]
                                      daemon=True)
            reader.start()
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if wanted in line:
            return line.strip()
        if not line:
            break
    process.kill()
    raise AssertionError(f"no line with {wanted!r} in time")


def start_cli(spec: str, port: int) -> tuple[subprocess.Popen[str], str, int]:
    """``lab path SPEC --to 127.0.0.1:PORT`` running: the process, the URL and the relay."""
    process = subprocess.Popen([*LAB, "path", spec, "--to", f"127.0.0.1:{port}"],
                               stdout=subprocess.PIPE, text=True)
    try:
        described = read_line(process, "emulated path")
        url = read_line(process, "through the path:").split()[3]
        relay_pid = int(described.rsplit("relay pid ", 1)[1])
    except BaseException:
        process.terminate()  # its own clean-up runs: no path is left by a failed start
        process.wait(15)
        raise
    return process, url, relay_pid


def wait_for_nothing_left(before: tuple[set[str], set[str], set[int]], *pids: int) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        namespaces, devices, helpers = left_over()
        left = sorted(namespaces - before[0]) + sorted(devices - before[1])
        left += [f"pid {pid}" for pid in sorted((helpers - before[2]) | {p for p in pids if alive(p)})]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def keepalive_milliseconds(url: str, requests: int) -> np.ndarray:
    spec = lab.LoadSpec(url=url, connections=1, max_requests=requests, duration_seconds=60,
                        timeout_seconds=10)
    result = lab.run_load(spec)
    assert result.errors == {}, result.errors
    samples = result.measured_samples()
    assert len(samples) == requests
    return np.asarray(samples["done_ns"] - samples["sent_ns"], dtype=float) / 1e6


@needs_privilege
@pytest.mark.timing
def test_path_to_uvicorn_adds_one_round_trip_per_keepalive_request() -> None:
    from lab.errors import PeerUnavailable
    from lab.peers.servers import start_peer

    try:
        uvicorn = start_peer("uvicorn")  # one write per answer, TCP_NODELAY: no stall of its own
    except PeerUnavailable as error:
        pytest.skip(str(error))
    before = left_over()
    with uvicorn:
        process, url, relay_pid = start_cli("delay=20ms", uvicorn.port)
        try:
            assert url == f"http://198.19.{url.split('.')[2]}.2:{uvicorn.port}"
            latency = keepalive_milliseconds(url + "/fast", 60)
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(15) == 0
    print(f"delay=20ms in front of uvicorn: keep-alive p50 {np.median(latency):.1f} ms")
    assert 38 <= np.median(latency) <= 50
    assert wait_for_nothing_left(before, relay_pid) == []


@needs_privilege
@pytest.mark.timing
def test_the_servers_own_tcp_crosses_the_path(plain_server: int) -> None:
    """``python -m http.server`` writes the head and the body of an answer apart, with Nagle
    on: the body waits for the client's delayed ACK of the head, which now comes over the path
    -- 40 ms + a delayed ACK (>= 40 ms) + 40 ms. A proxy in front of the server would hide it
    (the proxy's socket would be the sender on the path): one measured 41.8 ms here."""
    with Path(delay_ms=20).to(plain_server) as front:
        latency = keepalive_milliseconds(front.url + "/small.txt", 30)
    print(f"delay=20ms in front of http.server (head and body apart, Nagle on): "
          f"keep-alive p50 {np.median(latency):.1f} ms")
    assert np.median(latency) >= 100


@needs_privilege
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["ctrl-c", "sigterm", "sigkill"])
def test_nothing_is_left_after_the_owner_stops_or_is_killed(plain_server: int,
                                                            stop: signal.Signals) -> None:
    before = left_over()
    process, url, relay_pid = start_cli("delay=1ms", plain_server)
    namespaces, devices, helpers = left_over()
    assert namespaces - before[0] and devices - before[1]
    assert relay_pid in helpers
    connection = http.client.HTTPConnection(url.split("//")[1], timeout=10)
    connection.request("GET", "/small.txt")
    assert connection.getresponse().read() == b"ok\n"
    connection.close()
    process.send_signal(stop)
    process.wait(15)
    assert process.returncode == (-signal.SIGKILL if stop == signal.SIGKILL else 0)
    assert wait_for_nothing_left(before, relay_pid) == []
    assert not is_emulated_path(url.split("//")[1].split(":")[0])


@needs_privilege
def test_what_crosses_the_path_arrives_whole(plain_server: int) -> None:
    """A 1 MiB answer (back-pressure), a request after it on the same connection, an
    HTTP/1.0 request, after which the server closes: its close crosses the path."""
    with Path(delay_ms=2).to(("127.0.0.1", plain_server)) as front:
        assert isinstance(front, PathInFront) and front.running
        assert front.address == f"{front.path.server_address}:{plain_server}"
        connection = http.client.HTTPConnection(front.address, timeout=10)
        connection.request("GET", "/big.bin")
        body = connection.getresponse().read()
        assert body == bytes(range(256)) * (ONE_MEBIBYTE // 256)
        connection.request("GET", "/small.txt")  # the same connection, kept alive
        assert connection.getresponse().read() == b"ok\n"
        connection.close()
        with socket.create_connection((front.host, front.port), timeout=10) as raw:
            raw.sendall(b"GET /small.txt HTTP/1.0\r\n\r\n")  # the server closes after it
            received = b""
            while chunk := raw.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"\r\n\r\nok\n")
        stats = front.stats()
        assert stats["to_client"]["bytes"] > ONE_MEBIBYTE
        relay_pid = front.path.relay_pid
    assert relay_pid is not None and not alive(relay_pid)
    assert not front.running


@needs_privilege
def test_a_running_server_is_a_target_and_the_path_changes_in_place() -> None:
    with lab.start_server() as server, Path(delay_ms=5).to(server, port=8080) as front:
        assert isinstance(front, PathInFront)
        assert front.url == f"http://{front.path.server_address}:8080"
        latency = keepalive_milliseconds(front.url + "/fast", 10)
        assert latency.min() >= 9.5  # every answer crossed the 10 ms round trip
        front.update("delay=1ms")
        assert front.spec == Path(delay_ms=1)


@needs_privilege
def test_bench_save_through_path_to_records_the_path(plain_server: int, tmp_path: FilePath) -> None:
    with Path.parse("delay=1ms loss=0.1%").to(plain_server) as front:
        done = subprocess.run([*LAB, "bench", front.url + "/small.txt", "-c", "1", "-d", "0.3",
                               "--save", "--name", "behind", "--data-dir", str(tmp_path / "data")],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    record = lab.RecordStore(tmp_path / "data").load("behind")
    assert record.server_config == {"network_path": "delay=1ms loss=0.1%"}


# --- the panel in front of a server it did not start ----------------------------------------

def run_panel(panel: Any) -> lab.Record | None:
    import asyncio

    async def run() -> lab.Record | None:
        task = panel.start_run()
        assert task is not None, panel.message_text
        return await task
    return asyncio.run(run())


def test_a_panel_loads_a_server_it_did_not_start_and_has_no_server_knobs(plain_server: int,
                                                                      tmp_path: FilePath) -> None:
    from lab.notebook.panel import LabPanel

    panel = LabPanel(to=f"127.0.0.1:{plain_server}", path="/small.txt", store=lab.RecordStore(tmp_path),
                     load={"connections": 2, "duration_seconds": 0.3})
    try:
        assert panel.server is None and panel.server_form is None and panel.network_path_form is None
        assert "not started by the lab" in panel.server_status.value
        record = run_panel(panel)
        with pytest.raises(ConfigError, match="did not start") as caught:
            panel.set(nodelay=False)  # it would change nothing on that server
        assert caught.value.option == "nodelay"
        with pytest.raises(ConfigError, match="did not start"):
            panel.set(isolation="process")
        panel.set(connections=3)  # the load's knobs are all there
        assert panel.apply(), panel.message_text  # nothing to apply is no failure
    finally:
        panel.close()
    assert record is not None and record.summary.succeeded > 0 and record.summary.errors == {}
    assert record.load_spec["url"] == f"http://127.0.0.1:{plain_server}/small.txt"
    assert record.server_config is None  # its settings are its own: the record does not guess


def test_a_panel_to_nothing_listening_or_beside_its_own_server_is_one_line_naming_to() -> None:
    from lab.notebook.panel import LabPanel

    with pytest.raises(ConfigError, match=r"nothing is listening on 127\.0\.0\.1:") as caught:
        LabPanel(to=f"127.0.0.1:{free_port()}")
    assert caught.value.option == "to"
    with pytest.raises(ConfigError, match="not both") as caught:
        LabPanel(to="127.0.0.1:8000", app="asgi_apps:raw_ok")
    assert caught.value.option == "to"
    with pytest.raises(ConfigError, match="where it runs is its own") as caught:
        LabPanel(to="127.0.0.1:8000", isolation="process")
    assert caught.value.option == "isolation"


@needs_privilege
def test_a_panel_puts_a_path_in_front_of_a_server_it_did_not_start(plain_server: int,
                                                                 tmp_path: FilePath) -> None:
    from lab.notebook.panel import LabPanel

    panel = LabPanel(to=plain_server, network_path="delay=5ms", path="/small.txt",
                     store=lab.RecordStore(tmp_path), load={"connections": 1, "duration_seconds": 0.5})
    try:
        front = panel.front
        assert front is not None and panel.network_path_form is not None
        assert panel.base_url == front.url and "behind delay=5ms" in panel.server_status.value
        panel.set(delay_ms="10ms")
        assert panel.apply(), panel.message_text
        assert front.spec.delay_ms == 10 and "network path now delay=10ms" in panel.apply_message.value
        record = run_panel(panel)
        panel.network_path_form.controls["loss_percent"].value_widget.value = 250
        assert not panel.apply()  # refused, named by its label beside Apply, path unchanged
        assert "loss percent (%)" in panel.apply_message.value and front.spec.loss_percent == 0
    finally:
        panel.close()
    assert not front.running  # the panel removed the path it made
    assert record is not None and record.summary.succeeded > 0
    assert record.server_config == {"network_path": "delay=10ms"}
    assert record.summary.latency.p50 >= 19  # every answer crossed the 20 ms round trip


# --- sweeps and capacity behind a path ------------------------------------------------------

def test_a_sweep_plan_reads_path_knobs_as_the_path_text_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.experiments.sweeps as sweeps

    monkeypatch.setattr(sweeps, "missing_privilege", lambda: None)  # nothing is built here
    plan = sweeps.SweepPlan.create(
        "/fast", knobs={"delay": ["5ms", "20"], "nodelay": ["true", "false"]},
        fixed={"loss": "1%", "split_writes": "true"}, rounds=3, duration_seconds=0.2,
        warmup_seconds=None, connections=1, rate=None, stages=(), seed=1, metrics=("p50",),
        noise_band=0.05)
    assert plan.network_path == Path(loss_percent=1)  # held path knobs go into the path
    assert plan.fixed == {"split_writes": True}
    assert [sweeps.label(setting) for setting in plan.settings] == [
        "delay=5ms,nodelay=true", "delay=5ms,nodelay=false",
        "delay=20ms,nodelay=true", "delay=20ms,nodelay=false"]
    last = plan.settings[-1]
    assert plan.server_config(last) == lab.ServerConfig(nodelay=False, split_writes=True)
    assert plan.network_path_for(last) == Path(delay_ms=20, loss_percent=1)


@pytest.mark.parametrize(("words", "named"), [
    (["--knob", "delay=5ms,soon"], "--knob: delay=soon:"),
    (["--knob", "loss=5%,120%"], "--knob: loss=120%:"),
    (["--knob", "nodelay=true,false", "--set", "rate=fast"], "--set: rate=fast:"),
    (["--knob", "latency=1,2"], "--knob: unknown server knob 'latency'"),
])
def test_a_bad_path_knob_in_a_sweep_is_one_line_naming_the_flag(words: list[str], named: str) -> None:
    done = subprocess.run([*LAB, "sweep", "/fast", *words, "--no-save"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"python -m lab sweep: error: {named}")


def test_a_sweep_over_a_path_knob_without_the_privilege_says_so_before_any_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.experiments.sweeps as sweeps

    monkeypatch.setattr(sweeps, "missing_privilege", lambda: "needs root or CAP_NET_ADMIN (test)")
    with pytest.raises(ConfigError, match=r"emulate: cannot build an emulated network path: needs root"):
        sweeps.sweep("/fast", knobs={"delay": ["5ms", "20ms"]})


@needs_privilege
def test_a_sweep_over_delay_gives_a_verdict_and_records_each_runs_path(tmp_path: FilePath) -> None:
    before = left_over()
    done = subprocess.run([*LAB, "sweep", "/fast", "--knob", "delay=5ms,20ms", "--rounds", "6",
                           "-d", "0.3", "-c", "1", "--metric", "p50", "--json",
                           "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    [effect] = result["effects"]
    print(f"delay 5 ms -> 20 ms: p50 x{effect['ratio']:.2f} [{effect['ci_low']:.2f}, "
          f"{effect['ci_high']:.2f}] {effect['verdict']}")
    assert effect["setting"] == {"delay": 20.0} and effect["verdict"] == "slower"
    assert 2.5 <= effect["ratio"] <= 4.5  # (40 ms + the server) / (10 ms + the server)
    assert_each_run_recorded_its_delay(result, tmp_path)
    assert wait_for_nothing_left(before) == []


def assert_each_run_recorded_its_delay(result: dict[str, Any], tmp_path: FilePath) -> None:
    """Every run of a sweep over delay=5ms,20ms saved the path it went through."""
    store = lab.RecordStore(tmp_path / "data")
    crossed = {(run["setting"]["delay"], store.load(run["record_id"]).server_config["network_path"])
               for run in result["runs"]}
    assert crossed == {(5.0, "delay=5ms"), (20.0, "delay=20ms")}


@needs_privilege
def test_capacity_through_a_path_says_which_path(tmp_path: FilePath) -> None:
    with lab.start_server() as server, Path(delay_ms=1).to(server) as front:
        done = subprocess.run([*LAB, "capacity", front.url + "/fast", "--slo", "p99<500ms",
                               "-c", "4", "-d", "0.3", "--start-rate", "20", "--max-rate", "40",
                               "--budget", "10", "--json"],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["network_path"] == "delay=1ms"


# --- peers behind the same path -------------------------------------------------------------

@needs_privilege
@pytest.mark.parametrize("name", ["nginx", "uvicorn", "node"])
def test_a_peer_goes_behind_the_same_path_as_the_labs_server(name: str) -> None:
    """A comparison over a WAN: the lab's server behind a path, and a peer behind one alike."""
    from lab.errors import PeerUnavailable
    from lab.peers.servers import start_peer

    spec = Path(delay_ms=5)
    try:
        peer = start_peer(name)
    except PeerUnavailable as error:
        pytest.skip(str(error))
    with peer, spec.to(peer) as front, lab.start_server(path=spec) as server:
        figures = {who: keepalive_milliseconds(url + "/fast", 10)
                   for who, url in ((name, front.url), ("lab", server.url))}
    for who, latency in figures.items():
        assert latency.min() >= 9.5, who  # each answer crossed the 10 ms round trip
        assert np.median(latency) <= 30, who


# --- a sweep against a server the lab did not start -----------------------------------------

@needs_privilege
def test_a_sweep_over_delay_in_front_of_a_server_it_did_not_start_gives_a_verdict(
        tmp_path: FilePath) -> None:
    before = left_over()
    with lab.start_server(isolation="process") as server:  # the sweep knows only its address
        done = subprocess.run([*LAB, "sweep", "/fast", "--to", f"127.0.0.1:{server.port}",
                               "--knob", "delay=5ms,20ms", "--set", "jitter=0ms", "--rounds", "6",
                               "-d", "0.3", "-c", "1", "--metric", "p50", "--json",
                               "--data-dir", str(tmp_path / "data")],
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["target"] == f"127.0.0.1:{server.port}"
    assert result["cores"]["server"] is None  # not the lab's server: nothing pinned it
    [effect] = result["effects"]
    print(f"delay 5 ms -> 20 ms in front of a server: p50 x{effect['ratio']:.2f} {effect['verdict']}")
    assert effect["verdict"] == "slower" and 2.5 <= effect["ratio"] <= 4.5
    assert_each_run_recorded_its_delay(result, tmp_path)
    assert wait_for_nothing_left(before) == []


@needs_privilege
@pytest.mark.parametrize(("words", "named"), [
    (["--knob", "nodelay=true,false"], "--knob: nodelay is a knob of the lab's server"),
    (["--knob", "delay=5ms,20ms", "--set", "nodelay=false"], "--set: nodelay is a knob of the lab's server"),
    (["--knob", "delay=5ms,20ms", "--to", "127.0.0.1:1"], "--to: nothing is listening on 127.0.0.1:1"),
    (["--knob", "delay=5ms,20ms", "--to", "example.com:80"], "--to: example.com is not a loopback"),
])
def test_a_sweep_with_to_takes_only_path_knobs_and_a_live_target(words: list[str], named: str) -> None:
    to = [] if "--to" in words else ["--to", "127.0.0.1:1"]
    if "nothing" not in named and "loopback" not in named:
        to = ["--to", "127.0.0.1:9"]  # refused before anyone looks for a listener
    done = subprocess.run([*LAB, "sweep", "/", *words, *to, "--no-save"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"python -m lab sweep: error: {named}")


# --- the relay's address translation (no privilege needed) ---------------------------------

def tcp_packet(source: str, destination: str, source_port: int, destination_port: int,
               payload: bytes = b"GET / HTTP/1.1\r\n\r\n") -> bytes:
    """An IPv4 TCP packet with correct checksums, built from scratch."""
    from lab.netpath.nat import internet_checksum

    src, dst = socket.inet_aton(source), socket.inet_aton(destination)
    tcp = (source_port.to_bytes(2, "big") + destination_port.to_bytes(2, "big")
           + (1).to_bytes(4, "big") + (0).to_bytes(4, "big") + bytes([0x50, 0x18])
           + (65535).to_bytes(2, "big") + b"\0\0" + b"\0\0" + payload)
    pseudo = src + dst + bytes([0, 6]) + len(tcp).to_bytes(2, "big")
    tcp = tcp[:16] + internet_checksum(pseudo + tcp).to_bytes(2, "big") + tcp[18:]
    header = (bytes([0x45, 0]) + (20 + len(tcp)).to_bytes(2, "big") + b"\x12\x34\x40\x00"
              + bytes([64, 6]) + b"\0\0" + src + dst)
    header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
    return header + tcp


@pytest.mark.parametrize("payload", [b"", b"x", b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 5])
def test_translation_rewrites_addresses_and_port_with_checksums_as_if_built_anew(payload: bytes) -> None:
    from lab.netpath.nat import translations

    inward, outward = translations(client="198.19.0.1", server="198.19.0.2", back="198.19.0.3",
                                   target="127.0.0.1", target_port=8000, port=8080)
    sent = tcp_packet("198.19.0.1", "198.19.0.2", 40000, 8080, payload)
    assert inward(sent) == tcp_packet("198.19.0.3", "127.0.0.1", 40000, 8000, payload)
    answer = tcp_packet("127.0.0.1", "198.19.0.3", 8000, 40000, payload)
    assert outward(answer) == tcp_packet("198.19.0.2", "198.19.0.1", 8080, 40000, payload)


def test_translation_refuses_every_other_packet() -> None:
    from lab.netpath.nat import translations

    inward, _ = translations(client="198.19.0.1", server="198.19.0.2", back="198.19.0.3",
                             target="127.0.0.1", target_port=8000, port=8000)
    assert inward(tcp_packet("198.19.0.1", "198.19.0.2", 40000, 22)) is None  # another port
    assert inward(tcp_packet("198.19.0.9", "198.19.0.2", 40000, 8000)) is None  # another client
    udp = bytearray(tcp_packet("198.19.0.1", "198.19.0.2", 40000, 8000))
    udp[9] = 17
    assert inward(bytes(udp)) is None  # TCP alone
    fragment = bytearray(tcp_packet("198.19.0.1", "198.19.0.2", 40000, 8000))
    fragment[6:8] = b"\x20\x00"  # more fragments follow
    assert inward(bytes(fragment)) is None

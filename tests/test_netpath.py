"""The emulated network path (lab/netpath): its text form, its figures at one connection, what
loss does to the tail, and that nothing of it is left after a stop, a SIGKILL or without the
privilege to build it.

The timed tests drive the real server over the real path with the lab's generator; their
bounds are the issue's (delay=20ms: keep-alive p50 38-50 ms, a connection per request 78-95
ms; loss=2 %: p99 >= 200 ms, p50 <= 50 ms).
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path as FilePath

import numpy as np
import pytest

import lab
from lab.addresses import is_emulated_path, path_in_front_of
from lab.errors import ConfigError
from lab.measure.samples import MISSING
from lab.netpath import Path, missing_privilege, start_path
from lab.netpath.relay import Direction
from lab.netpath.system import (
    NAMESPACE_PREFIX,
    add_namespace,
    alive,
    client_device,
    lab_devices,
    lab_namespaces,
)
from lab.options import parse_value

REASON = missing_privilege()
needs_privilege = pytest.mark.skipif(REASON is not None, reason=f"emulated path: {REASON}")
NOTEBOOK_13 = FilePath(__file__).resolve().parent.parent / "notebooks" / "13-real-rtt.ipynb"
NOTEBOOK_17 = NOTEBOOK_13.with_name("17-tls.ipynb")


# --- the text form (no privilege needed) --------------------------------------------------

def test_a_path_is_written_as_text_and_read_back() -> None:
    path = Path.parse("delay=20ms jitter=2ms loss=0.5% burst=3 rate=100mbit queue=50 reorder=1%")
    assert path == Path(delay_ms=20, jitter_ms=2, loss_percent=0.5, loss_burst_packets=3,
                        rate_mbit=100, queue_packets=50, reorder_percent=1)
    assert Path.parse(str(path)) == path
    assert Path.parse("delay=1s rate=500kbit").delay_ms == 1000
    assert Path.parse("delay=1s rate=500kbit").rate_mbit == pytest.approx(0.5)
    assert path.rtt_ms == 40


@pytest.mark.parametrize(("text", "named"), [
    ("delay=20", None),                    # a bare number is milliseconds: fine
    ("delay=20 speed=1", "'speed=1'"),
    ("delay=20parsecs", "'delay=20parsecs'"),
    ("loss", "'loss'"),
    ("queue=1.5", "'queue=1.5'"),
])
def test_a_bad_token_is_named_with_the_allowed_form(text: str, named: str | None) -> None:
    if named is None:
        assert Path.parse(text).delay_ms == 20
        return
    with pytest.raises(ConfigError) as caught:
        Path.parse(text)
    assert caught.value.option == "emulate"
    assert named in str(caught.value) and "delay=20ms" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_value_out_of_range_names_its_knob() -> None:
    with pytest.raises(ConfigError) as caught:  # as the user wrote it: the flag, then the token
        Path.parse("loss=120%")
    assert caught.value.option == "emulate" and caught.value.message.startswith("loss: 120.0 is out of range")
    with pytest.raises(ConfigError, match="delay_ms"):
        Path(delay_ms=-1)


def test_a_path_reads_milliseconds_as_every_millisecond_knob_does() -> None:
    # One parser for both: panel.set(delay_ms="500us") and --emulate 'delay=500us' agree.
    for text in ("500us", "0.5ms", "0.0005s", "0.5"):
        assert Path.parse(f"delay={text}").delay_ms == pytest.approx(0.5)
        assert parse_value(Path, "delay_ms", text) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        Path.parse("delay=nan")


def test_serve_with_a_bad_path_is_one_line_naming_the_flag() -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "serve", "--emulate", "delay=20ms rtt=5"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("python -m lab serve: error: --emulate:")
    assert "Traceback" not in done.stderr


def test_serve_emulate_with_a_host_is_one_line_naming_it() -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "serve", "--emulate", "delay=20ms",
                           "--host", "127.0.0.1"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("python -m lab serve: error: --host:")


def test_without_the_privilege_one_line_says_what_is_missing() -> None:
    """Without CAP_NET_ADMIN, ``serve --emulate`` says what it needs and stops.

    As root the capability is dropped (setpriv) rather than the user switched: what the lab
    checks is the capability, and another uid may not even be able to run this interpreter
    (pyenv's Pythons live under root's private home, readable by root alone).
    """
    serve = [sys.executable, "-m", "lab", "serve", "--emulate", "delay=20ms"]
    if os.geteuid() != 0:
        command = serve
    else:
        if shutil.which("setpriv") is None:
            pytest.skip("drops CAP_NET_ADMIN from a root kernel with setpriv")
        command = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", *serve]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("lab: cannot build an emulated network path: needs root or CAP_NET_ADMIN")


# --- the path itself ----------------------------------------------------------------------

def nothing_left(namespace: str, relay_pid: int | None) -> list[str]:
    """What is left of one path (another run's paths may be up meanwhile)."""
    slot = int(namespace.rsplit("-", 1)[1])
    left = [name for name in lab_namespaces() if name == namespace]
    left += [device for device in lab_devices() if device == client_device(slot)]
    if relay_pid is not None and alive(relay_pid):
        left.append(f"relay {relay_pid}")
    return left


def one_connection(url: str, requests: int, *, keepalive: bool = True) -> np.ndarray:
    """Milliseconds per request at one connection; without keep-alive, the connect included."""
    spec = lab.LoadSpec(url=url, connections=1, max_requests=requests, duration_seconds=60,
                        keepalive=keepalive, timeout_seconds=10)
    result = lab.run_load(spec)
    samples = result.measured_samples()
    assert result.errors == {}, result.errors
    assert len(samples) == requests
    total = samples["done_ns"] - samples["sent_ns"]
    if not keepalive:
        assert (samples["connect_ns"] != MISSING).all()
        total = total + samples["connect_ns"]
    return np.asarray(total, dtype=float) / 1e6


@pytest.fixture
def delayed_server() -> Iterator[lab.ServerHandle]:
    server = lab.start_server(path="delay=20ms", isolation="process")
    yield server
    server.stop()


@needs_privilege
@pytest.mark.timing
def test_delay_20ms_costs_one_rtt_with_keepalive_and_two_without(delayed_server: lab.ServerHandle) -> None:
    assert delayed_server.path is not None
    assert delayed_server.url.startswith(f"http://{delayed_server.path.server_address}:")
    keepalive = one_connection(delayed_server.url + "/fast", 80)
    fresh = one_connection(delayed_server.url + "/fast", 30, keepalive=False)
    print(f"delay=20ms: keep-alive p50 {np.median(keepalive):.1f} ms, "
          f"a connection per request p50 {np.median(fresh):.1f} ms")
    assert 38 <= np.median(keepalive) <= 50
    assert 78 <= np.median(fresh) <= 95


@needs_privilege
@pytest.mark.timing
def test_loss_becomes_a_retransmission_timeout_tail() -> None:
    with lab.start_server(path="delay=20ms loss=2%", isolation="process") as server:
        latency = one_connection(server.url + "/fast", 300)
        assert server.path is not None
        lost = sum(server.path.stats()[way]["lost"] for way in ("to_server", "to_client"))
    slow = int((latency >= 200).sum())
    print(f"loss=2%: p50 {np.median(latency):.1f} ms, p99 {np.percentile(latency, 99):.1f} ms, "
          f"{slow} of 300 requests >= 200 ms, {lost} packets lost")
    assert lost > 0
    assert np.median(latency) <= 50
    assert np.percentile(latency, 99) >= 200


@needs_privilege
def test_stop_removes_everything_the_path_made() -> None:
    server = lab.start_server(path=Path(delay_ms=1))
    path = server.path
    assert path is not None and path.running
    assert path.namespace.startswith(NAMESPACE_PREFIX) and path.namespace in lab_namespaces()
    assert path.client_device in lab_devices()
    assert is_emulated_path(path.server_address)
    lab.LoadSpec(url=server.url)  # the generator accepts the lab's own path without opt-in
    server.stop()
    assert nothing_left(path.namespace, path.relay_pid) == []
    assert not is_emulated_path(path.server_address)
    with pytest.raises(ConfigError, match="allow_remote=True"):
        lab.LoadSpec(url=server.url)  # once it is gone, its address is remote like any other


@needs_privilege
def test_a_killed_parent_leaves_nothing_behind() -> None:
    """SIGKILL to ``serve --emulate``: the relay sees its parent go, removes the namespace and
    exits, and its devices go with it."""
    process = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--emulate", "delay=1ms"],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    described = _read_line(process, "emulated path")
    _read_line(process, "listening on")
    namespace = described.split("in namespace ")[1].split(",")[0]
    relay_pid = int(described.rsplit("relay pid ", 1)[1])
    assert namespace in lab_namespaces() and alive(relay_pid)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    deadline = time.monotonic() + 5
    while nothing_left(namespace, relay_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert nothing_left(namespace, relay_pid) == []


@needs_privilege
def test_a_stale_namespace_from_a_dead_run_is_removed_at_the_next_start() -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    stale = f"{NAMESPACE_PREFIX}{int(finished.stdout)}-250"  # its owner no longer exists
    add_namespace(stale)
    with start_path("delay=0ms") as path:
        assert stale not in lab_namespaces()
        assert path.namespace in lab_namespaces()


def _read_line(process: subprocess.Popen[str], wanted: str, timeout: float = 20) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            break
        line = process.stdout.readline()
        if wanted in line:
            return line.strip()
        if not line:
            break
    process.kill()
    raise AssertionError(f"no line with {wanted!r} in time")


@needs_privilege
def test_the_panel_shows_the_network_path_knobs_and_applies_them() -> None:
    from lab.notebook.panel import LabPanel

    panel = LabPanel(network_path="delay=5ms")
    try:
        form = panel.network_path_form
        assert form is not None
        assert set(form.controls) == {"delay_ms", "jitter_ms", "loss_percent", "loss_burst_packets",
                                      "rate_mbit", "queue_packets", "reorder_percent"}
        form.controls["delay_ms"].value_widget.value = 7.5
        assert panel.apply()
        assert panel.server.path is not None and panel.server.path.spec.delay_ms == 7.5
        form.controls["loss_percent"].value_widget.value = 250.0
        assert not panel.apply()
        assert "loss percent (%)" in panel.apply_message.value  # by its label, beside Apply
        assert form.controls["loss_percent"].get() == 0  # the form shows what the relay does
        # By name, as typed, like every other knob of the panel:
        panel.set(delay_ms="12ms", loss_percent=1)
        assert panel.apply()
        assert panel.server.path.spec.delay_ms == 12 and panel.server.path.spec.loss_percent == 1
        with pytest.raises(ConfigError, match="jitter_ms"):
            panel.set(delay_ms=3, jitter_ms=-1)
        assert form.controls["delay_ms"].get() == 12  # all or nothing: the good one is undone too
    finally:
        panel.server.stop()
    assert nothing_left(panel.server.path.namespace, panel.server.path.relay_pid) == []


# --- the relay's rules, packet by packet (no devices needed) ------------------------------

MS = 1_000_000  # nanoseconds


def direction(text: str, seed: int = 1) -> Direction:
    return Direction("to_server", out_fd=-1, path=Path.parse(text), rng=random.Random(seed))


def test_delay_holds_each_packet_and_jitter_keeps_their_order() -> None:
    plain = direction("delay=20ms")
    assert [plain.due(100, now) for now in (0, 5 * MS)] == [20 * MS, 25 * MS]
    jittery = direction("delay=20ms jitter=10ms")
    dues = [jittery.due(100, now * MS // 10) for now in range(2000)]
    assert dues == sorted(dues)  # never reordered by jitter alone
    spread = [due - now * MS // 10 for now, due in enumerate(dues)]
    assert min(spread) >= 10 * MS and max(spread) <= 30 * MS


def test_the_rate_limit_spaces_packets_and_drops_beyond_its_queue() -> None:
    link = direction("rate=8mbit queue=5")  # 1000 bytes take 1 ms at 8 Mbit/s
    dues = [link.due(1000, 0) for _ in range(8)]
    assert dues[:5] == [1 * MS, 2 * MS, 3 * MS, 4 * MS, 5 * MS]
    assert dues[5:] == [None, None, None]  # drop tail
    assert link.counts["queue_dropped"] == 3
    assert link.due(1000, 10 * MS) == 11 * MS  # the queue drained meanwhile


def test_loss_keeps_its_share_and_bursts_have_their_mean_length() -> None:
    for text, mean_run in (("loss=5%", 1.05), ("loss=5% burst=4", 4.0)):
        lossy = direction(text, seed=7)
        lost = [lossy.due(100, 0) is None for _ in range(200_000)]
        runs = [len(run) for run in "".join("x" if x else " " for x in lost).split()]
        assert sum(lost) / len(lost) == pytest.approx(0.05, rel=0.1), text
        assert np.mean(runs) == pytest.approx(mean_run, rel=0.1), text


def test_reordered_packets_skip_the_delay() -> None:
    shuffled = direction("delay=20ms reorder=25%", seed=3)
    dues = [shuffled.due(100, now * MS) for now in range(4000)]
    early = sum(due == now * MS for now, due in enumerate(dues))
    assert early == shuffled.counts["reordered"]
    assert early / len(dues) == pytest.approx(0.25, rel=0.1)


@needs_privilege
@pytest.mark.timing
def test_the_rate_limit_bounds_a_transfer() -> None:
    """512 KiB at 20 Mbit/s cannot take less than 0.21 s (plus slow start's round trips)."""
    with lab.start_server(path="rate=20mbit queue=200", isolation="process") as server:
        spec = lab.LoadSpec(url=server.url + "/bytes/524288", connections=1, max_requests=3,
                            duration_seconds=30)
        result = lab.run_load(spec)
    assert result.errors == {}
    seconds = (result.measured_samples()["done_ns"] - result.measured_samples()["sent_ns"]) / 1e9
    floor = 524_288 * 8 / 20e6
    print(f"512 KiB at rate=20mbit: {np.round(seconds, 3)} s (the rate allows {floor:.3f} s)")
    assert (seconds >= 0.95 * floor).all()
    assert np.median(seconds) <= 3 * floor


@needs_privilege
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_stopped_by_ctrl_c_or_sigterm_removes_its_path(stop: signal.Signals) -> None:
    process = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--emulate", "delay=1ms"],
                               stdout=subprocess.PIPE, text=True)
    described = _read_line(process, "emulated path")
    url = _read_line(process, "listening on").split()[-1]
    namespace = described.split("in namespace ")[1].split(",")[0]
    relay_pid = int(described.rsplit("relay pid ", 1)[1])
    assert lab.run_load(lab.LoadSpec(url=url + "/fast", connections=1, max_requests=5)).errors == {}
    process.send_signal(stop)
    assert process.wait(15) == 0
    assert nothing_left(namespace, relay_pid) == []


@needs_privilege
def test_two_paths_at_once_get_two_slots() -> None:
    with start_path("delay=1ms") as first, start_path("delay=2ms") as second:
        assert first.slot != second.slot
        assert first.server_address != second.server_address
        assert is_emulated_path(first.server_address) and is_emulated_path(second.server_address)
    assert not is_emulated_path(first.server_address)


@needs_privilege
def test_a_listener_restart_stays_behind_the_path() -> None:
    """A knob that re-creates the listener (backlog) keeps it in the path's namespace."""
    with lab.start_server(path="delay=1ms") as server:
        url = server.url
        server.reconfigure(backlog=64)
        assert server.url == url
        result = lab.run_load(lab.LoadSpec(url=url + "/fast", connections=1, max_requests=5))
        assert result.errors == {} and result.requests == 5
        with pytest.raises(ConfigError, match="host"):
            server.reconfigure(host="127.0.0.1")


@pytest.fixture
def no_net_admin_kernel(tmp_path: FilePath, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Jupyter kernel, as root, without CAP_NET_ADMIN: the name to execute a notebook with."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("drops CAP_NET_ADMIN from a root kernel with setpriv")
    spec_dir = tmp_path / "kernels" / "no-net-admin"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", sys.executable,
                 "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "no CAP_NET_ADMIN", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path / "data"))
    return "no-net-admin"


def printed_lines(notebook_file: FilePath, kernel: str, *, quick: bool = False) -> list[str]:
    """Every line the notebook's cells print (streams), run top to bottom in ``kernel``."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(notebook_file, as_version=4)
    if quick:  # as tests/test_notebooks.py does: after the cell tagged parameters
        tagged = next(index for index, cell in enumerate(notebook.cells)
                      if "parameters" in cell.metadata.get("tags", []))
        notebook.cells.insert(tagged + 1, nbformat.v4.new_code_cell("QUICK = True"))
    nbclient.NotebookClient(notebook, timeout=240, kernel_name=kernel,
                            resources={"metadata": {"path": str(notebook_file.parent)}}).execute()
    printed = [output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs if output.output_type == "stream"]
    return "".join(printed).strip().splitlines()


def test_notebook_13_skips_in_one_line_without_the_privilege(no_net_admin_kernel: str) -> None:
    """The notebook's kernel runs without CAP_NET_ADMIN: it says why in one line, runs every
    cell and measures nothing."""
    assert printed_lines(NOTEBOOK_13, no_net_admin_kernel) == [
        "skipping this notebook: cannot build an emulated network path: needs root or "
        "CAP_NET_ADMIN (running as uid 0 without it)",
        "skipped: the emulated path could not be built here"]


@pytest.mark.timing
@pytest.mark.timeout(300)
def test_notebook_17_skips_its_round_trips_and_measures_the_rest_without_the_privilege(
        no_net_admin_kernel: str) -> None:
    """Notebook 17's round trips need the path; its CPU, keep-alive and Nagle lessons run on
    loopback, and its checks of those still hold."""
    lines = printed_lines(NOTEBOOK_17, no_net_admin_kernel, quick=True)
    assert lines[0] == ("skipping the round-trip sections: cannot build an emulated network path: "
                        "needs root or CAP_NET_ADMIN (running as uid 0 without it)")
    assert "round trips: skipped, the emulated path could not be built here" in lines
    checks = [line for line in lines if line.startswith(("✓", "✗"))]
    assert checks and all(line.startswith("✓") for line in checks), checks
    assert any("RSA 4096" in line for line in checks) and any("Nagle" in line for line in checks), checks


@needs_privilege
def test_a_panel_run_behind_a_path_records_the_path(tmp_path: FilePath) -> None:
    import asyncio

    from lab.notebook.panel import LabPanel
    from lab.records.store import RecordStore

    panel = LabPanel(store=RecordStore(tmp_path / "data"), network_path="delay=1ms",
                     load={"connections": 1, "duration_seconds": 0.3})
    try:
        async def run() -> lab.Record | None:
            task = panel.start_run()
            assert task is not None, panel.message.value
            return await task
        record = asyncio.run(run())
    finally:
        panel.close()
    assert record is not None and record.server_config is not None
    assert record.server_config["network_path"] == str(Path.parse("delay=1ms"))
    assert record.settings()["server.network_path"] == str(Path.parse("delay=1ms"))


@needs_privilege
def test_bench_save_behind_a_path_records_the_path_it_ran_through(tmp_path: FilePath) -> None:
    # The generator knows only the address; the path's settings are on its device's alias.
    server = lab.start_server(path="delay=1ms")
    try:
        data = tmp_path / "data"
        for name in ("first", "after-update"):
            done = subprocess.run(
                [sys.executable, "-m", "lab", "bench", server.url + "/fast", "-c", "1", "-d", "0.3",
                 "--save", "--name", name, "--data-dir", str(data)],
                capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
            assert server.path is not None
            server.path.update("delay=2ms loss=1%")
        store = lab.RecordStore(data)
        records = {name: store.load(name) for name in ("first", "after-update")}
    finally:
        server.stop()
    assert records["first"].server_config == {"network_path": str(Path.parse("delay=1ms"))}
    assert records["after-update"].server_config == {"network_path": str(Path.parse("delay=2ms loss=1%"))}
    assert path_in_front_of(server.url.split("//")[1].split(":")[0]) is None  # gone with the path
    assert path_in_front_of("127.0.0.1") is None


@needs_privilege
def test_a_sweep_behind_a_path_runs_every_setting_over_the_round_trip(tmp_path: FilePath) -> None:
    store = lab.RecordStore(tmp_path / "data")
    before = set(lab_namespaces())
    result = lab.sweep("/fast", knobs={"nodelay": ["true", "false"]}, fixed={"split_writes": True},
                       rounds=3, duration_seconds=0.3, connections=1, network_path="delay=5ms",
                       store=store)
    assert result.to_json_dict()["network_path"] == str(Path.parse("delay=5ms"))
    records = [store.load(run.record_id) for run in result.runs]
    assert {record.server_config["network_path"] for record in records} == {str(Path.parse("delay=5ms"))}
    # Every run crossed the 10 ms round trip: even the fastest answer took a whole one.
    assert min(run.summary.latency.min for run in result.runs) >= 9.5
    assert set(lab_namespaces()) <= before  # the sweep's paths are gone with its servers


def test_a_sweep_that_cannot_build_its_path_says_so_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.experiments.sweeps as sweeps

    monkeypatch.setattr(sweeps, "missing_privilege", lambda: "needs root or CAP_NET_ADMIN (test)")
    with pytest.raises(ConfigError, match=r"emulate: cannot build an emulated network path: needs root"):
        sweeps.sweep("/fast", knobs={"nodelay": ["true", "false"]}, network_path="delay=5ms")

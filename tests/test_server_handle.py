"""Starting, reconfiguring and stopping the server: thread, process and CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from rawhttp import GET_FAST, Reader, connect, exchange, get

from lab.http.config import ServerConfig
from lab.options import ConfigError
from lab.server import start_server


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_invalid_option_names_the_option_and_range():
    with pytest.raises(ConfigError,
                       match=r"read_buffer_bytes: 10 is out of range; allowed: 256 bytes to 16 MiB"):
        ServerConfig(read_buffer_bytes=10)
    with pytest.raises(ConfigError, match="linger_seconds"):
        ServerConfig(linger_seconds=-1)
    with pytest.raises(ConfigError, match=r"loop.*one of 'uvloop', 'asyncio'"):
        ServerConfig(loop="tokio")
    with pytest.raises(ConfigError, match="nodelay: must be True or False"):
        ServerConfig(nodelay="yes")
    with pytest.raises(ConfigError, match="no_such_knob"):
        ServerConfig().replace(no_such_knob=1)


def test_stop_frees_the_port_and_closes_connections():
    server = start_server()
    port = server.port
    assert exchange(port, GET_FAST).body == b"OK"
    server.stop()
    assert port_is_free(port)
    assert not server.running
    server.stop()  # twice is harmless


def test_context_manager_and_url():
    with start_server() as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert repr(server).startswith("<ServerHandle http://127.0.0.1:")
    assert not server.running


def test_live_reconfigure_applies_to_new_connections(server):
    port = server.port
    server.reconfigure(nodelay=False)
    assert json.loads(exchange(port, get("/sockopts")).body)["nodelay"] is False
    assert server.port == port
    assert server.config.nodelay is False


def test_reconfigure_that_needs_a_new_listener_keeps_the_port(server):
    port = server.port
    server.reconfigure(backlog=64)
    assert server.port == port
    assert exchange(port, get("/fast")).body == b"OK"


def sockopts_on(sock, reader) -> dict:
    sock.sendall(get("/sockopts"))
    return json.loads(reader.response().body)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"nodelay": False}, {"nodelay": False}),
    ({"quickack": True}, {"quickack": True}),
    ({"linger_seconds": 0}, {"linger": {"enabled": True, "seconds": 0}}),
    ({"send_buffer_bytes": 64 * 1024}, {"send_buffer_bytes": 128 * 1024}),
    ({"read_buffer_bytes": 4096}, {"read_buffer_bytes": 4096}),
])
def test_socket_knobs_reach_a_connection_that_is_already_open(server, changes, expected):
    with connect(server.port) as sock:
        reader = Reader(sock)
        # One exchange first, as a load's connection has had: a new connection starts in
        # quick-ACK mode, and the kernel leaves it (TCP_QUICKACK reads 0) once the server answers.
        sockopts_on(sock, reader)
        before = sockopts_on(sock, reader)
        server.reconfigure(**changes)
        after = sockopts_on(sock, reader)
    for name, value in expected.items():
        assert after[name] == value, (name, before[name], after[name])
        assert before[name] != value


def test_switching_a_knob_back_undoes_it_on_the_open_connection(server):
    with connect(server.port) as sock:
        reader = Reader(sock)
        server.reconfigure(nodelay=False, linger_seconds=0)
        server.reconfigure(nodelay=True, linger_seconds=None)
        now = sockopts_on(sock, reader)
    assert now["nodelay"] is True and now["linger"]["enabled"] is False


def test_http_knobs_take_effect_at_the_next_request_of_an_open_connection(server):
    with connect(server.port) as sock:
        reader = Reader(sock)
        sock.sendall(get("/fast"))
        assert reader.response().headers["keep-alive"] == "timeout=5"
        server.reconfigure(keepalive_timeout_seconds=7)
        sock.sendall(get("/fast"))
        assert reader.response().headers["keep-alive"] == "timeout=7"


def test_reconfigure_rejects_bad_values_and_keeps_running(server):
    with pytest.raises(ConfigError, match="keepalive_timeout_seconds"):
        server.reconfigure(keepalive_timeout_seconds=0)
    assert exchange(server.port, GET_FAST).body == b"OK"


def test_port_in_use_is_a_clear_error(server):
    with pytest.raises(OSError, match="in use"):
        start_server(port=server.port)


def test_process_isolation_with_two_workers():
    with start_server(isolation="process", workers=2) as server:
        for _ in range(20):
            assert exchange(server.port, GET_FAST).body == b"OK"
        stats = server.stats()
        assert stats["requests"] == 20
        assert stats["connections_total"] == 20
        server.reconfigure(keepalive=False)
        assert exchange(server.port, GET_FAST).headers["connection"] == "close"
        server.reconfigure(workers=1)
        assert exchange(server.port, GET_FAST).body == b"OK"


def test_thread_isolation_refuses_several_workers():
    with pytest.raises(ConfigError, match="workers"):
        start_server(workers=2)


def serve(*flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lab", "serve", "--port", "0", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("flags", [(), ("--workers", "2")], ids=["one-worker", "two-workers"])
def test_cli_announces_serves_and_stops_on_sigterm(flags):
    process = serve("--no-nodelay", "--split-writes", "--keepalive-max", "5", *flags)
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line + process.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        answer = exchange(port, GET_FAST)
        assert answer.headers["keep-alive"] == "timeout=5, max=5"
        assert json.loads(exchange(port, get("/sockopts")).body)["nodelay"] is False
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert port_is_free(port)
        # a server that goes quiet when it stops leaves its user wondering: it says so
        assert process.stdout.read().strip().splitlines()[-1] == (
            f"stopped (SIGTERM): no longer listening on http://127.0.0.1:{port}")
    finally:
        if process.poll() is None:
            process.kill()


def test_cli_stops_on_ctrl_c():
    process = serve()
    try:
        assert process.stdout.readline().startswith("listening on")
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read().startswith("stopped (SIGINT): no longer listening on")
    finally:
        if process.poll() is None:
            process.kill()


def test_cli_bad_option_names_it():
    result = subprocess.run([sys.executable, "-m", "lab", "serve", "--read-buffer", "5"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--read-buffer: 5 is out of range; allowed: 256 bytes to 16 MiB" in result.stderr


def test_cli_port_in_use(server):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lab", "serve", "--port", str(server.port)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "in use" in result.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("body", [
    'lab.start_server(isolation="process").stop()',
    'lab.run_load(lab.LoadSpec(url=lab.start_server().url + "/fast", duration_seconds=0.3))',
], ids=["process-server", "load"])
def test_a_script_without_a_main_guard_is_told_what_to_do_in_one_line(body: str, tmp_path) -> None:
    """spawn and forkserver import the user's script again in each new process: a script that
    starts the lab at its top level would start it again there. One line says what to do."""
    script = tmp_path / "unguarded.py"
    script.write_text(f"import lab\n{body}\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    told = [line for line in done.stderr.splitlines() if line.startswith("lab: the script started")]
    assert told and 'if __name__ == "__main__":' in told[0], done.stderr
    assert "An attempt has been made to start a new process" not in done.stderr  # Python's page

"""``congestion_control``: each connection's TCP_CONGESTION, written at accept and on a live
change, read back from the server's own socket, refused with the kernel's list when missing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from rawhttp import Reader, connect, get

from lab.errors import ConfigError
from lab.http.config import ServerConfig
from lab.http.knobs import DEFAULT_CONGESTION_CONTROL, available_congestion_controls
from lab.server import start_server

AVAILABLE = available_congestion_controls()


def kernel_default() -> str:
    with open(DEFAULT_CONGESTION_CONTROL, encoding="ascii") as file:
        return file.read().strip()


def sockopts_on(sock: socket.socket, reader: Reader) -> dict:
    sock.sendall(get("/sockopts"))
    return json.loads(reader.response().body)


@pytest.mark.parametrize("name", ["bbr", "reno"])
def test_the_controller_is_read_back_from_the_servers_socket(name: str) -> None:
    if name not in AVAILABLE:
        pytest.skip(f"this kernel has not loaded {name} (available: {' '.join(AVAILABLE)}; "
                    f"modprobe tcp_{name})")
    with start_server(ServerConfig(congestion_control=name)) as server, connect(server.port) as sock:
        assert sockopts_on(sock, Reader(sock))["congestion_control"] == name


def test_a_live_change_reaches_open_connections_and_none_restores_the_kernels() -> None:
    others = [name for name in AVAILABLE if name != kernel_default()]
    if not others:
        pytest.skip(f"this kernel has one controller only ({' '.join(AVAILABLE)})")
    with start_server(ServerConfig()) as server, connect(server.port) as sock:
        reader = Reader(sock)
        assert sockopts_on(sock, reader)["congestion_control"] == kernel_default()
        server.reconfigure(congestion_control=others[0])
        assert sockopts_on(sock, reader)["congestion_control"] == others[0]
        server.reconfigure(congestion_control=None)
        assert sockopts_on(sock, reader)["congestion_control"] == kernel_default()


def test_a_controller_the_kernel_lacks_is_refused_naming_the_knob_and_the_list() -> None:
    with pytest.raises(ConfigError) as refused:
        ServerConfig(congestion_control="no-such-controller")
    assert refused.value.option == "congestion_control"
    for name in AVAILABLE:
        assert repr(name) in refused.value.message


def test_the_cli_refuses_it_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "serve", "--congestion-control", "vegas-x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "--congestion-control" in last and all(name in last for name in AVAILABLE)
    assert "Traceback" not in done.stderr

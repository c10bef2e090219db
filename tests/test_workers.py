"""Several server workers: how connections reach them (``balance``) and what each one served.

``reuseport`` gives each worker a listening socket of its own (SO_REUSEPORT) and the kernel
picks one per connection; ``shared`` has one listening socket, bound by the first worker and
handed to the others, which all accept from its single queue. The listening sockets the
kernel lists on the port tell the two apart from outside the server.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest
from rawhttp import GET_FAST, exchange

from lab.server import start_server


def listening_sockets(port: int) -> list[str]:
    """The kernel's LISTEN sockets on ``port``, one line each (with the processes holding it)."""
    shown = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                           check=True).stdout
    return [line for line in shown.splitlines() if line.strip()]


@pytest.mark.parametrize("balance, sockets", [("reuseport", 2), ("shared", 1)])
def test_each_balance_mode_reports_what_each_worker_served(balance, sockets):
    with start_server(isolation="process", workers=2, balance=balance) as server:
        for _ in range(40):
            assert exchange(server.port, GET_FAST).body == b"OK"  # a new connection each
        per_worker = server.worker_stats()
        total = server.stats()
        if shutil.which("ss"):
            assert len(listening_sockets(server.port)) == sockets
    assert len(per_worker) == 2
    assert sum(worker["requests"] for worker in per_worker) == total["requests"] == 40
    assert sum(worker["connections_total"] for worker in per_worker) == 40


def test_shared_listener_keeps_serving_after_a_reconfigure():
    with start_server(isolation="process", workers=2, balance="shared") as server:
        server.reconfigure(nodelay=False)  # applied in both workers; the queue stays one
        server.reconfigure(backlog=64)  # a listener knob: the workers are started again
        for _ in range(10):
            assert exchange(server.port, GET_FAST).body == b"OK"
        assert sum(worker["requests"] for worker in server.worker_stats()) == 10


def test_a_server_in_a_thread_is_one_worker():
    with start_server() as server:
        exchange(server.port, GET_FAST)
        assert [worker["requests"] for worker in server.worker_stats()] == [1]


def test_serve_prints_each_workers_share_when_it_stops():
    process = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--port", "0", "--workers", "2",
                                "--balance", "shared"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line + process.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        for _ in range(6):
            exchange(port, GET_FAST)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=15)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
    shares = [line for line in out.splitlines() if line.startswith("worker ")]
    assert len(shares) == 2, out
    assert sum(int(line.split(": ")[1].split(" requests")[0].replace(",", "")) for line in shares) == 6


def test_balance_with_a_wrong_value_names_the_flag():
    result = subprocess.run([sys.executable, "-m", "lab", "serve", "--balance", "hash"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--balance" in result.stderr and "Traceback" not in result.stderr

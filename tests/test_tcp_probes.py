"""The raw-socket probes of lab/notebook/probes.py and the socket listing of
lab/notebook/sockdiag.py, against the real server (or listeners of their own) on 127.0.0.1."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from lab.errors import LabError
from lab.measure.samples import MISSING, ErrorKind
from lab.notebook.probes import (
    TimeWaitCount,
    close_probe,
    count_time_wait,
    sequential_requests,
    unread_close_probe,
)
from lab.notebook.sockdiag import ListenQueue, listen_queue


def test_time_wait_is_counted_on_the_side_that_closed_first():
    # A listener of our own: the client closes first, so the client side holds TIME_WAIT.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        for _ in range(5):
            client = socket.create_connection(("127.0.0.1", port))
            accepted, _ = listener.accept()
            client.close()
            assert accepted.recv(1) == b""  # the client's FIN has arrived
            accepted.close()
        assert count_time_wait(port) == TimeWaitCount(server_side=0, client_side=5)


def test_a_listener_reports_its_accept_queue():
    with socket.create_server(("127.0.0.1", 0), backlog=7) as listener:
        port = listener.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        assert listen_queue(port) == ListenQueue(waiting=3, limit=7)
        for client in clients:
            client.close()
    with pytest.raises(LabError, match="nothing listens"):
        listen_queue(port)


@pytest.mark.parametrize("linger_seconds", [None, 5, 0])
def test_close_with_unread_data_resets_whatever_linger_says(linger_seconds):
    unread = unread_close_probe(linger_seconds=linger_seconds, read_everything=False)
    assert unread.ending == "rst"
    read = unread_close_probe(linger_seconds=linger_seconds, read_everything=True)
    assert read.ending == ("rst" if linger_seconds == 0 else "fin")


def test_an_orderly_close_leaves_time_wait_on_the_server(make_server):
    server = make_server(keepalive=False)
    for _ in range(10):
        assert close_probe(server.url + "/fast").ending == "fin"
    assert count_time_wait(server.port).server_side >= 5  # a few may be recycled, not most


def test_linger_zero_resets_and_leaves_no_time_wait(make_server):
    server = make_server(keepalive=False, linger_seconds=0)
    for _ in range(10):
        probe = close_probe(server.url + "/fast")
        assert probe.ending == "rst"
        assert probe.complete  # a small answer is read before the reset is reported
    assert count_time_wait(server.port).server_side == 0


def test_sequential_requests_records_sample_rows(server):
    samples = sequential_requests(server.url + "/bytes/100000", 3)
    assert (samples["error"] == ErrorKind.NONE).all()
    assert (samples["status"] == 200).all()
    assert (samples["response_bytes"] > 100000).all()
    assert samples["connect_ns"][0] > 0 and (samples["connect_ns"][1:] == MISSING).all()
    assert (samples["first_byte_ns"] >= samples["sent_ns"]).all()
    assert (samples["done_ns"] >= samples["first_byte_ns"]).all()


def test_client_quickack_removes_the_delayed_ack_stall(make_server):
    server = make_server(isolation="process", nodelay=False, split_writes=True)
    url = server.url + "/fast"
    stalled = sequential_requests(url, 8)
    quick = sequential_requests(url, 8, quickack=True)
    # The first request runs in quick-ACK mode on a new connection; the rest show the effect.
    stalled_ms = np.median((stalled["done_ns"] - stalled["sent_ns"])[1:]) / 1e6
    quick_ms = np.median((quick["done_ns"] - quick["sent_ns"])[1:]) / 1e6
    assert stalled_ms >= 25, f"expected the ~40 ms delayed-ACK stall, measured {stalled_ms:.1f} ms"
    assert quick_ms < 10, f"expected no stall with TCP_QUICKACK, measured {quick_ms:.1f} ms"


def test_probes_refuse_other_hosts():
    with pytest.raises(ValueError, match="loopback"):
        sequential_requests("http://192.0.2.1:80/", 1)
    with pytest.raises(ValueError, match="loopback"):
        close_probe("http://192.0.2.1:80/")

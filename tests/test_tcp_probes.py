"""The raw-socket probes of lab/tcp_probes.py, against the real server on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest

from lab.measure.samples import MISSING, ErrorKind
from lab.notebook.probes import (
    TimeWaitCount,
    close_probe,
    count_time_wait,
    parse_proc_net_tcp,
    sequential_requests,
)

# Two rows of /proc/net/tcp as the kernel prints them: a listener on 8080 (0x1F90) and a
# TIME_WAIT socket from port 8080 to 51000 (0xC738).
PROC_NET_TCP_TEXT = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 0100007F:1F90 0100007F:C738 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0
"""
PROC_NET_TCP6_TEXT = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000001000000:C738 00000000000000000000000001000000:1F90 06 00000000
"""


def test_parse_proc_net_tcp_reads_ports_and_states():
    entries = parse_proc_net_tcp(PROC_NET_TCP_TEXT)
    assert [(e.local_port, e.remote_port, e.state) for e in entries] == [
        (8080, 0, "LISTEN"), (8080, 51000, "TIME_WAIT")]


def test_count_time_wait_splits_by_the_side_that_closed_first(tmp_path):
    ipv4, ipv6 = tmp_path / "tcp", tmp_path / "tcp6"
    ipv4.write_text(PROC_NET_TCP_TEXT)
    ipv6.write_text(PROC_NET_TCP6_TEXT)
    count = count_time_wait(8080, tables=(ipv4, ipv6, tmp_path / "missing"))
    assert count == TimeWaitCount(server_side=1, client_side=1)
    assert count.total == 2


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

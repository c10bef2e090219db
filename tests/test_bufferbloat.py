"""Bufferbloat through the emulated path: a deep drop-tail queue behind a 20 Mbit/s bottleneck
makes a small request wait behind a bulk download when the sender's congestion controller fills
it (CUBIC); a shallow queue does not (lab/notebook/bufferbloat.py, notebook 21).

The bounds are the issue's, with the physics' margin: on a 10 ms RTT the deep queue adds about
100 ms (9x here when measured), the shallow one at most 6 ms (10 packets at 20 Mbit/s).
"""

from __future__ import annotations

from pathlib import Path as FilePath

import numpy as np
import pytest

import lab
from lab.netpath import missing_privilege
from lab.notebook.bufferbloat import probe_during_bulk

REASON = missing_privilege()
AVAILABLE = FilePath("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
PATH = "delay=5ms rate=20mbit queue={depth}"


@pytest.mark.timing
@pytest.mark.skipif(REASON is not None, reason=f"emulated path: {REASON}")
@pytest.mark.skipif("cubic" not in AVAILABLE, reason="this kernel has no cubic")
def test_a_deep_queue_bloats_a_small_request_and_a_shallow_one_does_not():
    with lab.start_server(isolation="process", path=PATH.format(depth=1000),
                          congestion_control="cubic") as server:
        idle = float(np.median(probe_during_bulk(server, seconds=2.0, bulk=False).latency_ms))
        deep = probe_during_bulk(server, seconds=4.0).p50_during_download()
        server.path.update(PATH.format(depth=10))
        shallow = probe_during_bulk(server, seconds=4.0).p50_during_download()
    assert deep >= 5 * idle, f"deep queue: p50 {deep:.1f} ms during the download, idle {idle:.1f} ms"
    assert shallow <= 2 * idle, f"shallow queue: p50 {shallow:.1f} ms during the download, idle {idle:.1f} ms"


def test_the_experiment_needs_a_path():
    with lab.start_server() as server, pytest.raises(ValueError, match="emulated path"):
        probe_during_bulk(server, seconds=0.5)

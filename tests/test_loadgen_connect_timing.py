"""Without keep-alive every request's row carries the time of its own connect."""

from __future__ import annotations

import numpy as np

from lab.loadgen import LoadSpec, run_load
from lab.measure.samples import MISSING


def test_each_new_connection_is_timed_on_its_own(make_server):
    server = make_server(isolation="process")
    result = run_load(LoadSpec(url=server.url + "/fast", connections=1, keepalive=False,
                               max_requests=200, duration_seconds=5))
    connects = result.samples["connect_ns"]
    assert (connects != MISSING).all()
    # One lane, 200 connects: a stale value repeated would give a single distinct time.
    assert np.unique(connects).size > 100

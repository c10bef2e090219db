"""The bufferbloat lesson's experiment: small requests timed while a bulk download fills (or does
not fill) the bottleneck queue of an emulated path.

The server runs behind ``rate=... queue=N`` (lab/netpath): the rate limit is the bottleneck and
``queue`` its drop-tail buffer, in packets. The download's sender is the server, so its
congestion controller (the ``congestion_control`` knob) decides how full that buffer gets; the
small requests' answers wait in the same queue. Bounded in time; everything goes through the
path, never off the machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lab.engine.spec import LoadSpec
from lab.loadgen import start_load
from lab.measure.samples import ErrorKind, latency_ns, start_ns
from lab.server import ServerHandle

BULK_BODY_BYTES = 2_000_000  # 0.8 s at 20 Mbit/s: the last body ends soon after the run does
BULK_STARTS_AFTER_SECONDS = 0.5  # the probes run alone first


@dataclass(frozen=True)
class Probed:
    """The small requests of one experiment, and what the download moved meanwhile."""

    at_seconds: np.ndarray  # each request's (intended) start, from the first one's
    latency_ms: np.ndarray
    mbit_per_second: float  # offered to the bottleneck by the server, retransmissions included
    queue_dropped: int

    def p50_during_download(self, settle_seconds: float = 1.0) -> float:
        """The median of the requests that started once the download had ``settle_seconds``
        to fill the queue (the first half second has no download at all)."""
        during = self.latency_ms[self.at_seconds > settle_seconds]
        return float(np.median(during if len(during) else self.latency_ms))


def probe_during_bulk(server: ServerHandle, *, seconds: float, bulk: bool = True,
                      probe_rate: float = 20.0) -> Probed:
    """Small ``GET /fast`` requests at ``probe_rate`` per second on four keep-alive connections
    for ``seconds``; with ``bulk``, from 0.5 s on, ``BULK_BODY_BYTES`` bodies back to back on one
    other connection. ``server`` must be behind an emulated path (``server.path``)."""
    path = server.path
    if path is None:
        raise ValueError("probe_during_bulk needs a server behind an emulated path (path=...)")
    before = path.stats()["to_client"]
    probes = start_load(LoadSpec(url=server.url + "/fast", mode="open", rate=probe_rate,
                                 connections=4, duration_seconds=seconds))
    download = None
    started = time.monotonic()
    if bulk:
        time.sleep(BULK_STARTS_AFTER_SECONDS)
        started = time.monotonic()
        download = start_load(LoadSpec(url=f"{server.url}/bytes/{BULK_BODY_BYTES}", connections=1,
                                       duration_seconds=seconds - BULK_STARTS_AFTER_SECONDS,
                                       timeout_seconds=30))
    samples = probes.result().measured_samples()
    if download is not None:
        download.result()  # the body in flight at the end is finished: time it to here
    elapsed = time.monotonic() - started
    after = path.stats()["to_client"]
    ok = samples[samples["error"] == ErrorKind.NONE]
    starts = start_ns(ok)
    return Probed(at_seconds=(starts - starts.min()) / 1e9 if len(ok) else np.zeros(0),
                  latency_ms=latency_ns(ok) / 1e6,
                  mbit_per_second=(after["bytes"] - before["bytes"]) * 8 / elapsed / 1e6,
                  queue_dropped=after["queue_dropped"] - before["queue_dropped"])

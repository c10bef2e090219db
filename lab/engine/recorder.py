"""Recording one row per request on the hot path, cheaply, then handing over a samples array.

Appending a packed struct to a ``bytearray`` (~0.2 µs on the lab machine) costs about as much
as appending a tuple to a list, but keeps 72 bytes per request instead of ~250 and turns into
numpy without a per-row conversion. Preallocated numpy rows were slower (~0.6 µs: every item
assignment goes through numpy's scalar machinery), ``array.extend`` too (~0.45 µs).

A TLS handshake's time and whether it resumed go into a table of their own, a row per new
connection naming the request row it belongs to: two more fields in every row cost ~550
instructions per request (callgrind, the lane's keep-alive path: 9,810 -> 10,360), paid by
plain and kept connections that never have a handshake to record.
"""

from __future__ import annotations

import struct

import numpy as np

from lab.measure.samples import MISSING, RECORDED_COLUMNS, TLS_COLUMNS, empty

COLUMNS = RECORDED_COLUMNS  # a row's fields, in order
ROW = struct.Struct(f"={len(COLUMNS)}q")  # every field as int64: one struct for any of them
TLS_ROW = struct.Struct(f"={1 + len(TLS_COLUMNS)}q")  # the request row's index, then TLS_COLUMNS


class Recorder:
    """The rows of one generator process. The hot path appends ``ROW.pack(...)`` to ``rows``."""

    __slots__ = ("rows", "tls_rows")

    def __init__(self) -> None:
        self.rows = bytearray()
        self.tls_rows = bytearray()  # TLS_ROW per request that opened a TLS connection

    def add(self, intended_ns: int, sent_ns: int, connect_ns: int, first_byte_ns: int,
            done_ns: int, status: int, response_bytes: int, error: int, attempt: int = 0,
            tls_ns: int = MISSING, tls_resumed: int = MISSING) -> None:
        self.rows += ROW.pack(intended_ns, sent_ns, connect_ns, first_byte_ns, done_ns, status,
                              response_bytes, error, attempt)
        if tls_ns != MISSING:
            self.add_tls(tls_ns, tls_resumed)

    def add_tls(self, tls_ns: int, tls_resumed: int) -> None:
        """The handshake of the request whose row was added last."""
        self.tls_rows += TLS_ROW.pack(len(self.rows) // ROW.size - 1, tls_ns, tls_resumed)

    @property
    def count(self) -> int:
        return len(self.rows) // ROW.size

    def samples(self, worker: int) -> np.ndarray:
        """The rows as a :data:`lab.measure.samples.SAMPLE_DTYPE` array, tagged with the worker."""
        table = np.frombuffer(self.rows, dtype=np.int64).reshape(-1, len(COLUMNS))
        samples = empty(len(table))
        for index, name in enumerate(COLUMNS):
            samples[name] = table[:, index]
        handshakes = np.frombuffer(self.tls_rows, dtype=np.int64).reshape(-1, 1 + len(TLS_COLUMNS))
        for index, name in enumerate(TLS_COLUMNS, start=1):
            samples[name][handshakes[:, 0]] = handshakes[:, index]
        samples["worker"] = worker
        return samples

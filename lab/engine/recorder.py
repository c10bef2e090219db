"""Recording one row per request on the hot path, cheaply, then handing over a samples array.

Appending a packed struct to a ``bytearray`` (~0.2 µs on the lab machine) costs about as much
as appending a tuple to a list, but keeps 72 bytes per request instead of ~250 and turns into
numpy without a per-row conversion. Preallocated numpy rows were slower (~0.6 µs: every item
assignment goes through numpy's scalar machinery), ``array.extend`` too (~0.45 µs).
"""

from __future__ import annotations

import struct

import numpy as np

from lab.measure.samples import RECORDED_COLUMNS, SAMPLE_DTYPE

COLUMNS = RECORDED_COLUMNS  # a row's fields, in order
ROW = struct.Struct(f"={len(COLUMNS)}q")  # every field as int64: one struct for any of them


class Recorder:
    """The rows of one generator process. The hot path appends ``ROW.pack(...)`` to ``rows``."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows = bytearray()

    def add(self, intended_ns: int, sent_ns: int, connect_ns: int, first_byte_ns: int,
            done_ns: int, status: int, response_bytes: int, error: int, attempt: int = 0) -> None:
        self.rows += ROW.pack(intended_ns, sent_ns, connect_ns, first_byte_ns, done_ns, status,
                              response_bytes, error, attempt)

    @property
    def count(self) -> int:
        return len(self.rows) // ROW.size

    def samples(self, worker: int) -> np.ndarray:
        """The rows as a :data:`lab.measure.samples.SAMPLE_DTYPE` array, tagged with the worker."""
        table = np.frombuffer(self.rows, dtype=np.int64).reshape(-1, len(COLUMNS))
        samples = np.zeros(len(table), dtype=SAMPLE_DTYPE)
        for index, name in enumerate(COLUMNS):
            samples[name] = table[:, index]
        samples["worker"] = worker
        return samples

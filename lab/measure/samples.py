"""Raw per-request samples: the format shared by the load generator, records and exports.

One row per request, every time in monotonic nanoseconds (``time.perf_counter_ns``, which on
Linux is CLOCK_MONOTONIC and so comparable across the generator's worker processes).
A time that does not apply is ``MISSING`` (-1): e.g. ``intended_ns`` in the closed loop,
``connect_ns`` when the request reused a keep-alive connection, ``first_byte_ns`` when no
byte came back.

With retries every attempt is a row of its own, numbered by ``attempt`` (0 the first). A
retry's ``intended_ns`` is its request's start -- the first attempt's intended send, or in the
closed loop its actual send -- so the latency of the attempt that finally succeeds counts from
when the request began, as its caller lived it (the coordinated-omission correction holds for
retries too); ``sent_ns`` is the retry's own send.
"""

from __future__ import annotations

import enum

import numpy as np

MISSING = -1


class ErrorKind(enum.IntEnum):
    """Why a request failed; every failed request carries exactly one kind."""

    NONE = 0
    CONNECT_REFUSED = 1  # nobody listening, or the backlog was full
    RESET = 2  # the server reset the connection mid-request
    TIMEOUT = 3  # no complete answer within the per-request timeout
    BAD_STATUS = 4  # a complete answer with status >= 400
    MALFORMED = 5  # bytes that are not a valid HTTP/1.1 response
    CLOSED_BY_SERVER = 6  # orderly close (FIN) before the answer was complete
    CONNECT_ERROR = 7  # any other failure to connect (e.g. unreachable)
    OTHER = 8
    WORKER_LOST = 9  # a cluster worker died or was lost: its requests are gone with it
    # more than an answer may take: a WebSocket message over the size limit, or a flood of frames
    TOO_LARGE = 10
    # the request's deadline (across its attempts, LoadSpec.deadline_seconds) passed before an
    # answer: its attempt was cut short, or it waited for a connection past it and never went
    DEADLINE = 11
    # the TLS handshake failed: the certificate, no common version, not TLS at all, or no answer
    TLS_FAILED = 12

    @property
    def label(self) -> str:
        return self.name.lower()


SAMPLE_DTYPE = np.dtype([
    ("intended_ns", np.int64),  # when the schedule said to send (open loop); MISSING otherwise
    ("sent_ns", np.int64),  # when the first request byte was handed to the kernel
    # duration of the TCP connect of the connection this request was the first on: inside its
    # latency when it waited for it (a reconnect, no keep-alive, --connect with-load), not when
    # the connection was opened before the run; MISSING on a connection already used
    ("connect_ns", np.int64),
    ("first_byte_ns", np.int64),  # when the first response byte arrived
    ("done_ns", np.int64),  # when the response was complete (or the error was seen)
    ("status", np.int16),  # HTTP status; 0 when there was none; 101 for a WebSocket message
    ("response_bytes", np.int64),  # bytes received for this response, headers included
    ("error", np.int8),  # an ErrorKind value
    # duration of the TLS handshake of the connection this request opened, from the TCP
    # connection being up to the handshake's end; MISSING if reused, or plain (http://, ws://)
    ("tls_ns", np.int64),
    ("tls_resumed", np.int8),  # that handshake resumed an earlier session: 1, or 0; MISSING if none
    ("worker", np.int16),  # which generator process sent it
    ("attempt", np.int8),  # 0 for a request's first attempt, n for its n-th retry
])

# Every other list of columns is derived from the dtype above, so that a column is added there
# and nowhere else.
# What a new TLS connection adds to its first request's row: recorded apart from the rows, once
# per connection, so that a request on a kept connection costs what it did before TLS.
TLS_COLUMNS: tuple[str, ...] = ("tls_ns", "tls_resumed")
# What a generator process records per request, in this order (its worker tags them later).
RECORDED_COLUMNS: tuple[str, ...] = tuple(name for name in SAMPLE_DTYPE.names or ()
                                          if name != "worker" and name not in TLS_COLUMNS)
# Times in nanoseconds: MISSING where they do not apply.
TIME_COLUMNS: tuple[str, ...] = tuple(name for name in SAMPLE_DTYPE.names or () if name.endswith("_ns"))
# Of those, the durations: the same on every clock.
DURATION_COLUMNS: tuple[str, ...] = ("connect_ns", "tls_ns")
# The instants read on a generator's clock: moved as a whole onto another clock (a Dask
# worker's onto the client's).
CLOCK_COLUMNS: tuple[str, ...] = tuple(name for name in TIME_COLUMNS if name not in DURATION_COLUMNS)
# Columns that hold MISSING where they do not apply (besides the times).
FLAG_COLUMNS: tuple[str, ...] = ("tls_resumed",)

# The samples of records saved before the TLS columns or ``attempt`` existed: read, they gain
# those columns (TLS ones MISSING, ``attempt`` 0: a first attempt; see upgrade()).
_ADDED_LATER = (TLS_COLUMNS, ("attempt",), (*TLS_COLUMNS, "attempt"))
LEGACY_SAMPLE_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype([(name, SAMPLE_DTYPE[name]) for name in SAMPLE_DTYPE.names or () if name not in added])
    for added in _ADDED_LATER)


def empty(count: int = 0) -> np.ndarray:
    """A samples array of ``count`` rows, every time MISSING."""
    samples = np.zeros(count, dtype=SAMPLE_DTYPE)
    for name in (*TIME_COLUMNS, *FLAG_COLUMNS):
        samples[name] = MISSING
    return samples


def upgrade(samples: np.ndarray) -> np.ndarray:
    """Samples in an older layout (:data:`LEGACY_SAMPLE_DTYPES`) in the current one: the TLS
    columns they lack are MISSING, as for a request those columns do not apply to, and a row
    without ``attempt`` is a first attempt (0)."""
    if samples.dtype == SAMPLE_DTYPE:
        return samples
    current = empty(len(samples))
    for name in samples.dtype.names or ():
        current[name] = samples[name]
    return current


def first_attempts(samples: np.ndarray) -> np.ndarray:
    """The rows of first attempts: one per request, whatever its retries."""
    return np.asarray(samples[samples["attempt"] == 0])


def start_ns(samples: np.ndarray) -> np.ndarray:
    """The time each request's latency counts from: the intended send where there is one.

    Timing from the intended send is what corrects for coordinated omission (wrk2's method):
    a request that had to wait for a stalled server is charged for the wait.
    """
    return np.where(samples["intended_ns"] != MISSING, samples["intended_ns"], samples["sent_ns"])


def latency_ns(samples: np.ndarray, *, corrected: bool = True) -> np.ndarray:
    """Latency of each successful request (``error == NONE``), in nanoseconds."""
    ok = samples[samples["error"] == ErrorKind.NONE]
    begin = start_ns(ok) if corrected else ok["sent_ns"]
    return np.asarray(ok["done_ns"] - begin, dtype=np.int64)


def ttfb_ns(samples: np.ndarray) -> np.ndarray:
    """Time to first byte of each successful request, from its actual send."""
    ok = samples[samples["error"] == ErrorKind.NONE]
    return np.asarray(ok["first_byte_ns"] - ok["sent_ns"], dtype=np.int64)


def error_counts(samples: np.ndarray) -> dict[str, int]:
    """Failed requests by kind, only the kinds that occurred."""
    kinds, counts = np.unique(samples["error"], return_counts=True)
    return {ErrorKind(int(k)).label: int(c) for k, c in zip(kinds, counts, strict=True)
            if k != ErrorKind.NONE}


def merge(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate samples from several workers, ordered by start time."""
    if not parts:
        return empty(0)
    merged = np.concatenate(parts)
    return merged[np.argsort(start_ns(merged), kind="stable")]

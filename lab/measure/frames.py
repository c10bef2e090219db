"""Live frames: what one interval of a run looked like, small enough to send 10 times a second.

A generator process must not ship raw samples to the parent while it runs (a run at 100k
requests/s would move 6 MB/s through a pipe and cost the generator its rate). Instead each
worker sums the requests that *completed* in each interval of the run into a frame: counts,
the slowest request, and a histogram of the successful requests' latencies in HdrHistogram's
layout: one range per power of two, split into 16 equal buckets.

Histograms merge exactly: the frames of several workers for one interval add up bucket by
bucket, and percentiles are read from the merged histogram -- never averaged across workers
(an average of two workers' p99s is nobody's p99). A bucket is 3.1-6.25 % of its values wide,
so a percentile read from a frame (the bucket's middle) is within 3.125 % (``RESOLUTION``) of
the exact one:
plenty for a live picture; the run's figures still come from the exact samples afterwards.

On the wire a frame is a fixed header plus only its non-empty buckets (2 + 4 bytes each). The
largest possible frame (every bucket used) is 3,890 bytes: under ``PIPE_BUF`` (4,096), so a
non-blocking write of it to a pipe is atomic -- whole or not at all, never torn.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from lab.units import NS_PER_MS

_PART_BITS = 4
BUCKETS_PER_OCTAVE = 1 << _PART_BITS
# How far a percentile read from a frame (its bucket's middle) can be from the exact value in
# that bucket: half a bucket, which is 1/16 of its octave's lower bound, so 1/32 = 3.125 % at
# most. The live view says so beside its figures.
RESOLUTION = 1 / (2 * BUCKETS_PER_OCTAVE)
# 2**40 ns is about 18 minutes: anything slower lands in the last bucket.
BUCKET_COUNT = 40 * BUCKETS_PER_OCTAVE
# interval index, requests, successful, errors (by kind), bad statuses, slowest (ns), buckets used
_HEADER = struct.Struct("=qqqqqqH")
_INDEX_DTYPE = np.dtype("<u2")
_COUNT_DTYPE = np.dtype("<u4")
MAX_FRAME_BYTES = _HEADER.size + BUCKET_COUNT * (_INDEX_DTYPE.itemsize + _COUNT_DTYPE.itemsize)


def bucket_of(latency_ns: np.ndarray) -> np.ndarray:
    """The histogram bucket of each latency, read off the bits of its float64 value: the
    exponent (the octave) and the top 4 bits of the mantissa (which 16th of it). The
    definition of a bucket: :func:`add_to_histogram` counts by the same bits in bulk, and the
    tests check the one against the other."""
    as_float = np.maximum(latency_ns, 1).astype(np.float64)
    # sign (0), 11 exponent bits biased by 1023, then the mantissa's top 4 bits
    octave_and_part = (as_float.view(np.int64) >> (52 - _PART_BITS)) - (1023 << _PART_BITS)
    buckets: np.ndarray = np.minimum(octave_and_part, BUCKET_COUNT - 1).astype(np.intp)
    return buckets


_FLOAT_OF_ONE = 1023 << _PART_BITS  # bucket_of's bits for 1 ns: bucket 0


def add_to_histogram(histogram: np.ndarray, latency_ns: np.ndarray) -> None:
    """``histogram += counts of bucket_of(latency_ns)`` in as few passes as numpy allows
    (``latency_ns`` is clipped to >= 1 in place). The generator runs this on every request."""
    np.maximum(latency_ns, 1, out=latency_ns)
    raw = np.bincount(latency_ns.astype(np.float64).view(np.int64) >> (52 - _PART_BITS))
    counted = raw[_FLOAT_OF_ONE:_FLOAT_OF_ONE + BUCKET_COUNT]
    histogram[:counted.size] += counted
    histogram[-1] += raw[_FLOAT_OF_ONE + BUCKET_COUNT:].sum()  # beyond the last bucket


def bucket_middle_ns(index: np.ndarray | int) -> np.ndarray:
    """A bucket's representative value: the middle of its bounds."""
    octave, part = np.divmod(np.asarray(index, dtype=np.int64), BUCKETS_PER_OCTAVE)
    middle: np.ndarray = np.exp2(octave.astype(np.float64)) * (1 + (part + 0.5) / BUCKETS_PER_OCTAVE)
    return middle


def empty_histogram() -> np.ndarray:
    return np.zeros(BUCKET_COUNT, dtype=np.int64)


def percentile_ns(histogram: np.ndarray, percent: float) -> float:
    """The ``percent`` percentile of a bucket histogram (NaN when it is empty).

    Nearest rank, as the run summary's figures: the bucket holding the ceil(p·n)-th value.
    """
    total = int(histogram.sum())
    if total == 0:
        return float("nan")
    rank = max(1, int(np.ceil(percent / 100 * total)))
    index = int(np.searchsorted(np.cumsum(histogram), rank))
    return float(bucket_middle_ns(index))


@dataclass
class Frame:
    """The requests that completed in one interval of a run (one worker's, or merged)."""

    index: int  # interval number from the run's start (warm-up included)
    requests: int = 0  # completed, whatever the outcome
    ok: int = 0  # successful (2xx/3xx, no error): the ones in the histogram
    errors: int = 0  # failed by an error kind (timeout, reset, refused...)
    bad_status: int = 0  # answered with a 4xx/5xx
    max_ns: int = 0  # the slowest successful request (exact, not a bucket)
    histogram: np.ndarray = field(default_factory=empty_histogram)

    def add(self, other: Frame) -> None:
        """Merge another frame of the same interval into this one (bucket by bucket)."""
        self.requests += other.requests
        self.ok += other.ok
        self.errors += other.errors
        self.bad_status += other.bad_status
        self.max_ns = max(self.max_ns, other.max_ns)
        self.histogram += other.histogram

    def percentile_ms(self, percent: float) -> float:
        # A bucket's middle may lie above the exact slowest request in it; no percentile is
        # slower than the maximum ("p99.9 48.5 ms, max 48.2 ms" was seen on the live view).
        return min(percentile_ns(self.histogram, percent), self.max_ns) / NS_PER_MS

    @property
    def max_ms(self) -> float:
        return self.max_ns / NS_PER_MS if self.ok else float("nan")

    def encode(self) -> bytes:
        used = np.flatnonzero(self.histogram)
        return (_HEADER.pack(self.index, self.requests, self.ok, self.errors, self.bad_status,
                             self.max_ns, used.size)
                + used.astype(_INDEX_DTYPE).tobytes()
                + self.histogram[used].astype(_COUNT_DTYPE).tobytes())

    @classmethod
    def decode(cls, data: bytes) -> Frame:
        index, requests, ok, errors, bad_status, max_ns, used = _HEADER.unpack_from(data)
        at = _HEADER.size
        buckets = np.frombuffer(data, dtype=_INDEX_DTYPE, count=used, offset=at)
        counts = np.frombuffer(data, dtype=_COUNT_DTYPE, count=used,
                               offset=at + used * _INDEX_DTYPE.itemsize)
        histogram = empty_histogram()
        histogram[buckets.astype(np.intp)] = counts
        return cls(index, requests, ok, errors, bad_status, max_ns, histogram)


def merge_frames(frames: Iterable[Frame]) -> list[Frame]:
    """Frames of several workers merged per interval, in interval order."""
    merged: dict[int, Frame] = {}
    for frame in frames:
        if frame.index not in merged:
            merged[frame.index] = Frame(frame.index)
        merged[frame.index].add(frame)
    return [merged[index] for index in sorted(merged)]

"""Queueing figures from raw samples: requests in flight over time, throughput in a window,
Little's law, and Kingman's approximation of the wait in a queue.

A request is *in the system* from its start to its completion. Its start is the intended send
where there is one (the open loop: a request waiting in the generator's queue for a free
connection is already waiting, as a user would be) or the actual send (``corrected=False``:
only what the server and the network hold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lab.errors import ConfigError
from lab.measure.samples import MISSING, start_ns
from lab.measure.summary import completion_ns
from lab.units import NS_PER_MS, NS_PER_S

DEFAULT_STEP_NS = NS_PER_MS


def _spans(samples: np.ndarray, corrected: bool) -> tuple[np.ndarray, np.ndarray]:
    """(begin, end) of every request that has a begin, in nanoseconds."""
    if corrected:
        return start_ns(samples), completion_ns(samples)
    sent = samples[samples["sent_ns"] != MISSING]
    return sent["sent_ns"], completion_ns(sent)


def in_flight(samples: np.ndarray, instants_ns: np.ndarray, *, corrected: bool = True) -> np.ndarray:
    """How many requests were in flight at each instant: begun at or before it, not yet done."""
    begins, ends = _spans(samples, corrected)
    instants = np.asarray(instants_ns)
    begun = np.searchsorted(np.sort(begins), instants, side="right")
    ended = np.searchsorted(np.sort(ends), instants, side="right")
    return begun - ended


def mean_in_flight(samples: np.ndarray, window_start_ns: int, window_end_ns: int, *,
                   corrected: bool = True, step_ns: int = DEFAULT_STEP_NS) -> float:
    """The time-average of :func:`in_flight` over a window, looked at every ``step_ns``.

    This counts heads at instants; it does not use anyone's latency, so comparing it with
    throughput times mean latency is a real check of Little's law (and of the timestamps).
    """
    if window_end_ns <= window_start_ns:
        raise ConfigError("window", "the end must come after the start")
    instants = np.arange(window_start_ns, window_end_ns, step_ns)
    return float(in_flight(samples, instants, corrected=corrected).mean())


def busy_fraction(samples: np.ndarray, window_start_ns: int, window_end_ns: int, *,
                  step_ns: int = NS_PER_MS // 10) -> float:
    """The share of the window in which at least one sent request was not yet answered.

    For a server that works on one request at a time this is its utilisation as seen from
    outside (a slight overestimate: the network and the parsing count as busy). It is what the
    load really was, where offered ÷ a capacity measured earlier is only what it was meant to
    be: on a shared machine the server's capacity moves between the two measurements.
    """
    if window_end_ns <= window_start_ns:
        raise ConfigError("window", "the end must come after the start")
    instants = np.arange(window_start_ns, window_end_ns, step_ns)
    return float((in_flight(samples, instants, corrected=False) >= 1).mean())


@dataclass(frozen=True, kw_only=True)
class LittlesLaw:
    """L = λW over one window: heads counted (L) against throughput times mean latency."""

    window_s: float
    throughput_per_s: float  # λ: requests that completed in the window, per second
    mean_latency_ms: float  # W: mean time in the system of those requests
    measured_in_flight: float  # L, counted
    predicted_in_flight: float  # λW

    @property
    def ratio(self) -> float:
        """measured / predicted; 1.0 when the law holds and the clocks agree."""
        if self.predicted_in_flight == 0:
            return float("nan")
        return self.measured_in_flight / self.predicted_in_flight


def completed_in(samples: np.ndarray, window_start_ns: int, window_end_ns: int) -> np.ndarray:
    """The requests that completed inside the window (errors included)."""
    done = completion_ns(samples)
    return samples[(done >= window_start_ns) & (done < window_end_ns)]


def throughput(samples: np.ndarray, window_start_ns: int, window_end_ns: int) -> float:
    """Completions per second inside the window: what the system delivered, whatever was
    offered (an open loop past saturation offers more than this)."""
    window_s = (window_end_ns - window_start_ns) / NS_PER_S
    return completed_in(samples, window_start_ns, window_end_ns).size / window_s


def littles_law(samples: np.ndarray, window_start_ns: int, window_end_ns: int, *,
                corrected: bool = True, step_ns: int = DEFAULT_STEP_NS) -> LittlesLaw:
    """Little's law checked on one window of a run's raw samples."""
    finished = completed_in(samples, window_start_ns, window_end_ns)
    begins, ends = _spans(finished, corrected)
    window_s = (window_end_ns - window_start_ns) / NS_PER_S
    rate = begins.size / window_s
    mean_s = float((ends - begins).mean()) / NS_PER_S if begins.size else float("nan")
    return LittlesLaw(
        window_s=window_s, throughput_per_s=rate, mean_latency_ms=mean_s * 1000,
        measured_in_flight=mean_in_flight(samples, window_start_ns, window_end_ns,
                                          corrected=corrected, step_ns=step_ns),
        predicted_in_flight=rate * mean_s)


def kingman_wait_ms(utilisation: float, service_ms: float, *, arrival_cv2: float = 1.0,
                    service_cv2: float = 1.0) -> float:
    """Kingman's approximation of the mean wait in the queue of a single server (G/G/1):

        Wq ≈ ρ / (1 − ρ) · (ca² + cs²) / 2 · S

    ``cv2`` are squared coefficients of variation (variance / mean²): 0 for perfectly regular
    arrivals or service, 1 for exponential. Infinite at or past saturation (ρ >= 1).
    """
    if utilisation < 0 or service_ms < 0:
        raise ConfigError("utilisation", "utilisation and service_ms must not be negative")
    if utilisation >= 1:
        return math.inf
    return utilisation / (1 - utilisation) * (arrival_cv2 + service_cv2) / 2 * service_ms


def interactive_response_ms(users: int, service_ms: float, think_ms: float) -> float:
    """Mean response time of ``users`` who each think for ``think_ms`` on average between an
    answer and their next request, in front of one server with mean service time ``service_ms``
    (a closed system: the machine-repairman model).

    Exact mean value analysis for exponential service (first come, first served), and exact
    for any think-time distribution: a request arriving while n−1 others use the system finds,
    on average, the queue the system has with n−1 users, so

        R(n) = S · (1 + Q(n−1)),   X(n) = n / (R(n) + Z),   Q(n) = X(n) · R(n).

    Its two asymptotes are R ≈ S (few users) and R ≈ n·S − Z (many); they cross at the knee
    n* = (S + Z) / S.
    """
    if users < 1 or service_ms <= 0 or think_ms < 0:
        raise ConfigError("users", "needs at least one user, a positive service time and a "
                          "think time that is not negative")
    queue = 0.0
    response = service_ms
    for n in range(1, users + 1):
        response = service_ms * (1 + queue)
        queue = n / (response + think_ms) * response
    return response

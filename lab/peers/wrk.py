"""Run wrk (Debian's ``/usr/bin/wrk``) against a URL and read its text summary into numbers.

    from lab.peers.wrk import WrkLoad, run_wrk

    result = run_wrk("http://127.0.0.1:8080/fast", WrkLoad(connections=50, duration_s=5), cores=[1])
    result.requests_per_s, result.percentile_ms(99), result.socket_errors.total

wrk is the closed-loop tool users recognise: the lab's own generator is compared
with it, and the peers are measured with it. Every run is bounded: wrk's duration plus its
response timeout plus a grace period, after which wrk is killed.

``WrkLoad(script=path)`` runs a wrk Lua script (``-s``), e.g. benchmarks/distinct_requests.lua,
which sends 100,000 requests that differ in one header; wrk prints the same summary with a
script, so the result reads the same (as long as the script defines no ``done()`` of its own).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from lab.addresses import require_loopback
from lab.errors import ConfigError, WrkError, WrkNotFound
from lab.peers.pinning import Cores, pinned_command

WRK_BINARY = "/usr/bin/wrk"
# wrk needs a moment past its duration to start its threads and print the summary.
WRK_GRACE_S = 10.0
PERCENTILES = (50.0, 75.0, 90.0, 99.0)  # what ``wrk --latency`` prints

# wrk's own unit tables (src/units.c): times in microseconds, counts in powers of 1000,
# bytes in powers of 1024.
TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
METRIC_UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
BINARY_UNITS = {"B": 1.0, "KB": 1024.0, "MB": 1024.0**2, "GB": 1024.0**3, "TB": 1024.0**4, "PB": 1024.0**5}






# --- the load: one typed value, shared by the API and the benchmark CLI --------------------

@dataclass(frozen=True, kw_only=True)
class WrkLoad:
    """What wrk is told to do. wrk takes whole seconds for both durations."""

    threads: int = 1
    connections: int = 50
    duration_s: int = 10
    # A response slower than this counts as a timeout error and its latency is not recorded.
    timeout_s: int = 2
    latency: bool = True  # --latency: print the 50/75/90/99 % percentiles
    # -s: a wrk Lua script, e.g. one whose request() varies what is sent (None: wrk's one request).
    script: Path | None = None
    # -H: headers added to every request, e.g. "Connection: close" for a new connection (and,
    # over https, a new handshake) per request
    headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("threads", "connections", "duration_s", "timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(name, f"a whole number of at least 1, got {value!r}")
        if self.connections < self.threads:
            # wrk refuses this itself ("number of connections must be >= threads").
            raise ConfigError("connections", f"{self.connections} must be at least threads ({self.threads})")
        # Checked here, not left to wrk: wrk reports a missing script only once the run starts,
        # in words that do not name the setting.
        if self.script is not None and not Path(self.script).is_file():
            raise ConfigError("script", f"no wrk Lua script at {self.script}")

    @property
    def bound_s(self) -> float:
        """How long a run may take before it is killed."""
        return self.duration_s + self.timeout_s + WRK_GRACE_S

    def arguments(self) -> list[str]:
        latency_flag = ["--latency"] if self.latency else []
        script_flag = [f"--script={self.script}"] if self.script is not None else []
        return [f"--threads={self.threads}", f"--connections={self.connections}",
                f"--duration={self.duration_s}s", f"--timeout={self.timeout_s}s",
                *latency_flag, *script_flag, *(f"--header={header}" for header in self.headers)]


# --- the result --------------------------------------------------------------------------

@dataclass(frozen=True)
class SocketErrors:
    """wrk's ``Socket errors:`` line; wrk omits the line when all are zero."""

    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0

    @property
    def total(self) -> int:
        return self.connect + self.read + self.write + self.timeout


@dataclass(frozen=True)
class WrkResult:
    """One wrk summary, in plain units: milliseconds, seconds, bytes, requests per second."""

    url: str
    threads: int
    connections: int
    requests: int
    duration_s: float
    bytes_read: float
    requests_per_s: float
    transfer_bytes_per_s: float
    latency_avg_ms: float
    latency_stdev_ms: float
    latency_max_ms: float
    latency_within_stdev_percent: float  # nan when nothing was recorded (wrk prints -nan%)
    thread_requests_per_s_avg: float
    thread_requests_per_s_stdev: float
    thread_requests_per_s_max: float
    percentiles_ms: dict[float, float] = field(default_factory=dict)  # empty without --latency
    socket_errors: SocketErrors = field(default_factory=SocketErrors)
    # wrk's "Non-2xx or 3xx responses": in fact every status of 400 or more.
    non_2xx_or_3xx: int = 0
    output: str = field(default="", repr=False)

    def percentile_ms(self, percent: float) -> float:
        if percent not in self.percentiles_ms:
            printed = sorted(self.percentiles_ms) or "none (run with latency=True)"
            raise KeyError(f"wrk printed no {percent:g}% percentile; it printed {printed}")
        return self.percentiles_ms[percent]

    @property
    def errors_total(self) -> int:
        return self.socket_errors.total + self.non_2xx_or_3xx


# --- units -------------------------------------------------------------------------------

_QUANTITY = re.compile(r"^(-?(?:\d+(?:\.\d*)?|nan|inf))([A-Za-z]*)$")


def _split_quantity(text: str) -> tuple[float, str]:
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise WrkError(f"wrk printed {text!r} where a number was expected")
    return float(match.group(1)), match.group(2)


def _scaled(text: str, units: dict[str, float], kind: str) -> float:
    number, unit = _split_quantity(text)
    if unit not in units:
        raise WrkError(f"wrk printed {text!r}: unknown {kind} unit {unit!r} (known: {sorted(units)})")
    return number * units[unit]


def time_ms(text: str) -> float:
    """``'363.57us'``, ``'1.20s'``, ``'2.00m'`` → milliseconds."""
    return _scaled(text, TIME_UNITS_US, "time") / 1e3


def time_s(text: str) -> float:
    return _scaled(text, TIME_UNITS_US, "time") / 1e6


def metric(text: str) -> float:
    """``'130.02k'``, ``'1.50M'``, ``'719.20'`` → a plain number."""
    return _scaled(text, METRIC_UNITS, "count")


def byte_count(text: str) -> float:
    """``'143.14MB'``, ``'620.00B'`` → bytes (wrk uses powers of 1024)."""
    return _scaled(text, BINARY_UNITS, "byte")


def percent(text: str) -> float:
    return float(text.rstrip("%"))  # float() reads wrk's "-nan" as nan


# --- parsing -----------------------------------------------------------------------------

_HEADER = re.compile(r"^Running (?P<duration>\S+) test @ (?P<url>\S+)", re.MULTILINE)
_SHAPE = re.compile(r"^\s+(?P<threads>\d+) threads and (?P<connections>\d+) connections", re.MULTILINE)
_STAT_ROW = r"^\s+{name}\s+(?P<avg>\S+)\s+(?P<stdev>\S+)\s+(?P<max>\S+)\s+(?P<within>\S+%)\s*$"
_LATENCY = re.compile(_STAT_ROW.format(name="Latency"), re.MULTILINE)
_REQ_PER_THREAD = re.compile(_STAT_ROW.format(name=re.escape("Req/Sec")), re.MULTILINE)
_PERCENTILE = re.compile(r"^\s+(?P<percent>\d+(?:\.\d+)?)%\s+(?P<value>\S+)\s*$", re.MULTILINE)
_TOTALS = re.compile(r"^\s+(?P<requests>\d+) requests in (?P<duration>\S+), (?P<bytes>\S+) read",
                     re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (?P<connect>\d+), read (?P<read>\d+), "
                            r"write (?P<write>\d+), timeout (?P<timeout>\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (?P<count>\d+)")
_RATE = re.compile(r"^Requests/sec:\s+(?P<value>\S+)", re.MULTILINE)
_TRANSFER = re.compile(r"^Transfer/sec:\s+(?P<value>\S+)", re.MULTILINE)


def _required(pattern: re.Pattern[str], output: str, what: str) -> re.Match[str]:
    match = pattern.search(output)
    if match is None:
        raise WrkError(f"wrk's output has no {what} line; it printed:\n{output}")
    return match


def parse_output(output: str) -> WrkResult:
    """Read wrk's text summary (with or without ``--latency``) into a WrkResult."""
    header = _required(_HEADER, output, "'Running … test @ URL'")
    shape = _required(_SHAPE, output, "'N threads and M connections'")
    latency = _required(_LATENCY, output, "Latency")
    per_thread = _required(_REQ_PER_THREAD, output, "Req/Sec")
    totals = _required(_TOTALS, output, "'N requests in T, B read'")
    socket_errors = _SOCKET_ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        url=header["url"],
        threads=int(shape["threads"]),
        connections=int(shape["connections"]),
        requests=int(totals["requests"]),
        duration_s=time_s(totals["duration"]),
        bytes_read=byte_count(totals["bytes"]),
        requests_per_s=float(_required(_RATE, output, "Requests/sec")["value"]),
        transfer_bytes_per_s=byte_count(_required(_TRANSFER, output, "Transfer/sec")["value"]),
        latency_avg_ms=time_ms(latency["avg"]),
        latency_stdev_ms=time_ms(latency["stdev"]),
        latency_max_ms=time_ms(latency["max"]),
        latency_within_stdev_percent=percent(latency["within"]),
        thread_requests_per_s_avg=metric(per_thread["avg"]),
        thread_requests_per_s_stdev=metric(per_thread["stdev"]),
        thread_requests_per_s_max=metric(per_thread["max"]),
        percentiles_ms=_percentiles(output),
        socket_errors=SocketErrors(**{kind: int(count) for kind, count in socket_errors.groupdict().items()})
        if socket_errors else SocketErrors(),
        non_2xx_or_3xx=int(non_2xx["count"]) if non_2xx else 0,
        output=output,
    )


def _percentiles(output: str) -> dict[float, float]:
    """The ``Latency Distribution`` block; the ``Latency`` stats row above it has no ``N%`` start."""
    start = output.find("Latency Distribution")
    if start < 0:
        return {}
    return {float(match["percent"]): time_ms(match["value"]) for match in _PERCENTILE.finditer(output, start)}


# --- running -----------------------------------------------------------------------------

def find_wrk() -> str:
    """The wrk binary, or WrkNotFound saying how to get it."""
    if Path(WRK_BINARY).exists():
        return WRK_BINARY
    found = shutil.which("wrk")
    if found is None:
        raise WrkNotFound(f"wrk not found at {WRK_BINARY} or on PATH: install Debian's wrk package "
                          "(apt-get install wrk, or bash scripts/setup.sh --system)")
    return found


def check_target(url: str, *, allow_remote: bool = False) -> None:
    """Refuse anything but http(s) on a loopback address unless the caller opts in."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("url", f"an http:// or https:// URL with a host, got {url!r}")
    require_loopback(parts.hostname, allow_remote=allow_remote)


def run_wrk(url: str, load: WrkLoad | None = None, *, cores: Cores | None = None,
            allow_remote: bool = False) -> WrkResult:
    """Run wrk once (pinned to ``cores`` with taskset when given) and parse its summary."""
    load = load or WrkLoad()
    check_target(url, allow_remote=allow_remote)
    command = pinned_command([find_wrk(), *load.arguments(), url], cores)
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=load.bound_s, check=False)
    except subprocess.TimeoutExpired as error:
        raise WrkError(f"wrk ran past its bound of {load.bound_s:g} s and was killed: "
                       f"{' '.join(command)}") from error
    if completed.returncode != 0:
        said = completed.stderr.strip() or completed.stdout
        raise WrkError(f"wrk exited with code {completed.returncode}: {said}")
    return parse_output(completed.stdout)

"""The load specification: the one definition of every load-generator knob.

The API (``LoadSpec(...)``, ``run_load``), the CLI (``python -m lab bench``) and the notebook
widgets all derive from the field declarations below, as ``ServerConfig`` does for the server.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from lab.addresses import require_loopback
from lab.engine.stages import Schedule, Stage, parse_stages
from lab.errors import ConfigError
from lab.measure.thresholds import parse_thresholds
from lab.options import knob, validate

MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024  # as the websockets library's own default
MAX_MESSAGE_LIMIT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class LoadSpec:
    # --- what to call -----------------------------------------------------------------------
    url: str = knob(help="target, e.g. http://127.0.0.1:8080/fast; its path is used unless "
                    "`paths` is given; ws://127.0.0.1:8080/ws/echo sends WebSocket messages, "
                    "each round trip one request; https:// and wss:// speak TLS",
                    group="target", widget=False)
    method: str = knob("GET", help="HTTP method", flag="--method", group="target", widget=False)
    paths: tuple[str, ...] = knob((), help="request paths, taken in turn; empty = the URL's path",
                                  group="target", widget=False)
    headers: tuple[tuple[str, str], ...] = knob(
        (), help="extra request headers as (name, value) pairs", group="target", widget=False)
    body: str = knob("", help="request body, sent as UTF-8 (Content-Length is added)",
                     flag="--body", metavar="TEXT", group="target", widget=False)
    allow_remote: bool = knob(
        False, help="allow a target outside 127.0.0.0/8 and ::1 (you must own it)",
        flag="--allow-remote", group="target", widget=False)

    # --- WebSocket messages (ws:// targets) --------------------------------------------------
    message_bytes: int = knob(16, minimum=0, maximum=MAX_BODY_BYTES, unit="bytes",
                              help="ws://: size of each message sent", flag="--message-bytes",
                              metavar="BYTES", group="websocket", label="message size")
    message_type: Literal["text", "binary"] = knob(
        "text", choices=("text", "binary"), help="ws://: send text or binary frames",
        flag="--message-type", group="websocket")
    ws_compression: bool = knob(False, help="ws://: offer permessage-deflate; when the server "
                                "takes it every message is compressed both ways",
                                flag="--ws-compression", group="websocket")
    max_message_bytes: int = knob(
        DEFAULT_MAX_MESSAGE_BYTES, minimum=1, maximum=MAX_MESSAGE_LIMIT_BYTES, unit="bytes",
        help="ws://: the largest message accepted from the server; a larger one fails its "
             "request (too_large) and the connection, so a hostile server cannot grow the "
             "generator's memory", flag="--max-message-bytes", metavar="BYTES", group="websocket",
        label="message limit")

    # --- TLS (https:// and wss:// targets) -------------------------------------------------------
    insecure: bool = knob(
        False, help="https://, wss://: accept any certificate (by default the lab's own CA and the "
                    "system's are trusted, and the host name is checked)",
        flag="--insecure", group="tls", widget=False)
    ca_file: str = knob("", help="https://, wss://: trust this CA (a PEM file) alone, as curl's --cacert",
                        flag="--ca-file", metavar="PEM", group="tls", widget=False)
    tls_resume: bool = knob(
        False, help="https://, wss://: offer each new connection the TLS session of an earlier one, "
                    "so that a server that allows it resumes instead of a full handshake",
        flag="--tls-resume", group="tls", widget=False)

    # --- load model -------------------------------------------------------------------------
    mode: Literal["closed", "open"] = knob(
        "closed", choices=("closed", "open"),
        help="closed: each connection sends its next request when the last answer is complete "
             "(wrk); open: requests arrive at a constant rate whatever the answers do (wrk2)",
        group="load")
    connections: int = knob(10, minimum=1, maximum=10_000,
                            help="connections (closed loop) or size of the connection pool "
                                 "(open loop: the client's concurrency limit; a request due when "
                                 "none is free waits for one, timed from its intended time), "
                                 "split across workers",
                            flag="--connections", short_flag="-c", metavar="N", group="load")
    rate: float | None = knob(
        None, minimum=0.1, maximum=10_000_000, unit="requests/s",
        help="target arrival rate of the open loop (giving it on the CLI selects the open loop)",
        flag="--rate", short_flag="-R", metavar="R", group="load")
    stages: tuple[str, ...] = knob(
        (), help="open loop in stages instead of one rate, DURATION:RATE or DURATION:FROM-TO for a "
                 "linear ramp (repeatable, in order), e.g. 10s:500, 30s:500-5000; their total is "
                 "the run's duration", flag="--stage", metavar="DURATION:RATE", group="load", widget=False)
    think_ms: float = knob(
        0.0, minimum=0, maximum=3_600_000, unit="ms",
        help="closed loop: each connection pauses between an answer and its next request, for "
             "an exponentially distributed time with this mean, as a user reading a page "
             "(0: at once, as wrk)", flag="--think", metavar="MS", group="load", label="think time")
    workers: int = knob(1, minimum=1, maximum=64,
                        help="generator processes splitting the connections and the rate",
                        flag="--workers", short_flag="-t", metavar="N", group="load")

    # --- bounds -----------------------------------------------------------------------------
    duration_seconds: float = knob(10.0, minimum=0.01, maximum=24 * 3600, unit="s",
                                   help="how long the measured part of the run lasts",
                                   flag="--duration", short_flag="-d", metavar="S", group="bounds")
    warmup_seconds: float = knob(0.0, minimum=0, maximum=3600, unit="s",
                                 help="run this long first; measured, kept in the samples, "
                                      "left out of the summary", flag="--warmup", metavar="S",
                                 group="bounds")
    max_requests: int | None = knob(None, minimum=1, maximum=1_000_000_000,
                                    help="stop after this many requests (warm-up included; "
                                    "-n as oha and ab take it)", flag="--max-requests",
                                    short_flag="-n", metavar="N", group="bounds", widget=False)
    timeout_seconds: float = knob(5.0, minimum=0.001, maximum=3600, unit="s",
                                  help="a request with no complete answer this long after its "
                                       "send is a timeout", flag="--timeout", metavar="S",
                                  group="bounds")

    # --- connection behaviour ---------------------------------------------------------------
    keepalive: bool = knob(True, help="reuse connections (off: a new connection per request, "
                           "with Connection: close)", flag="--keepalive", group="connection")
    connect: Literal["before", "with-load"] = knob(
        "before", choices=("before", "with-load"),
        help="before: open every connection before the clock starts, so the run measures "
             "connections already accepted; with-load: open them all as the run starts, each "
             "sending its first request once connected (wrk, ab and oha do), so a server slow "
             "to accept a burst of connections shows in the first requests",
        flag="--connect", group="connection", label="connect")
    late_after_ms: float = knob(
        1.0, minimum=0, maximum=60_000, unit="ms",
        help="open loop: a request sent this much after its intended time counts as late",
        flag="--late-after", metavar="MS", group="connection", widget=False)

    # --- retries and deadlines (overload experiments) -----------------------------------------
    retries: int = knob(
        0, minimum=0, maximum=10, help="retry a failed request up to this many times; every "
        "attempt is a sample of its own, numbered, and timed from the request's start",
        flag="--retries", metavar="N", group="retries")
    retry_on: str = knob(
        "timeout,5xx,reset", help="which failures are retried, comma-separated: timeout, 5xx "
        "(a 5xx answer), reset (reset or closed by the server), connect (refused or failed)",
        flag="--retry-on", metavar="KINDS", group="retries", widget=False)
    backoff: Literal["none", "exponential", "full-jitter"] = knob(
        "full-jitter", choices=("none", "exponential", "full-jitter"),
        help="the wait before retry n: none (at once), exponential (base x 2^(n-1), capped at "
             "1 s), full-jitter (a uniform draw between 0 and that, which spreads the retries "
             "of requests that failed together)", flag="--backoff", group="retries")
    backoff_ms: float = knob(
        10.0, minimum=0, maximum=60_000, unit="ms", label="backoff base",
        help="the first retry's backoff (exponential) or its upper bound (full-jitter)",
        flag="--backoff-base", metavar="MS", group="retries")
    retry_budget_percent: float | None = knob(
        None, minimum=0, maximum=100, unit="%", label="retry budget",
        help="retries at most this share of requests (a token bucket: each request adds the "
             "share, each retry takes one, at most 10 saved up), so retries cannot multiply an "
             "overload (None = every failure may be retried)", flag="--retry-budget",
        metavar="PERCENT", group="retries")
    deadline_seconds: float | None = knob(
        None, minimum=0.001, maximum=3600, unit="s", label="deadline",
        help="a request's whole time, from its start across all its attempts (waiting for a "
             "connection included): an attempt is cut at it and no retry starts after it; a "
             "request answered within it counts towards goodput (None = no deadline)",
        flag="--deadline", metavar="S", group="retries")

    # --- the generator's own loop (issue 28) -------------------------------------------------
    hiccup_meter: bool = knob(
        False, help="measure how late each generator worker's own loop wakes against a 1 ms "
        "tick, as jHiccup does (the server's meter is serve --hiccup-meter): a stall of the "
        "generator shows here, a slow server does not; kept as the run's generator hiccups",
        flag="--hiccup-meter", group="generator loop", widget=False)
    pause_every_seconds: float | None = knob(
        None, minimum=0.01, maximum=3600, unit="s", label="pause every",
        help="freeze each generator worker's loop this often, the first this long after the "
             "load starts (None = never), as a client's GC pause would: the server is not "
             "stalled, yet latencies timed from the intended send grow",
        flag="--pause-every", metavar="S", group="generator loop", widget=False)
    pause_ms: float = knob(0.0, minimum=0, maximum=60_000, unit="ms", label="pause length",
                           help="how long each pause of the generator's loop lasts",
                           flag="--pause-ms", metavar="MS", group="generator loop", widget=False)

    # --- pass/fail --------------------------------------------------------------------------
    thresholds: tuple[str, ...] = knob(
        (), help="a condition the run must meet, checked on its figures (repeatable), e.g. "
                 "p99<5ms, p99.9<=20ms, errors<1%, rps>=1000; units us, ms, s, %",
        flag="--threshold", metavar="EXPR", group="thresholds")

    def __post_init__(self) -> None:
        validate(self)
        if self.stages:
            self._check_stages()
        elif self.mode == "open" and self.rate is None:
            raise ConfigError("rate", "the open loop needs a rate (requests/s) or stages")
        if self.mode == "closed" and self.rate is not None:
            raise ConfigError("rate", "a rate applies to the open loop only; set mode='open'")
        if self.mode == "open" and self.think_ms:
            raise ConfigError("think_ms", "think time applies to the closed loop only (the open "
                              "loop's requests are due at the rate, whatever the answers do)")
        if self.workers > self.connections:
            raise ConfigError("workers", f"{self.workers} workers need at least as many "
                              f"connections (got {self.connections})")
        if self.method.upper() != self.method or not self.method.isalpha():
            raise ConfigError("method", f"{self.method!r} is not an upper-case HTTP method")
        if len(self.body.encode()) > MAX_BODY_BYTES:
            raise ConfigError("body", f"at most {MAX_BODY_BYTES} bytes")
        for path in self.paths:
            if not path.startswith("/"):
                raise ConfigError("paths", f"{path!r} must start with '/'")
        for name, value in self.headers:
            # A CR or LF would end the header line and start another: headers nobody asked for.
            if any(mark in name or mark in value for mark in "\r\n") or not name or ":" in name:
                raise ConfigError("headers", f"{name!r}: {value!r} is not one header line "
                                  "(a name without ':', no CR or LF)")
        if self.target.websocket and (self.paths or not self.keepalive or self.method != "GET"):
            raise ConfigError("url", "a ws:// or wss:// run sends messages on its URL's path over kept "
                              "connections: no paths, keepalive off or method other than GET")
        if self.target.websocket and self.message_bytes > self.max_message_bytes:
            raise ConfigError("max_message_bytes", f"{self.max_message_bytes} bytes is less than "
                              f"the {self.message_bytes}-byte message sent: every echo would fail")
        retry_kinds(self.retry_on)
        if self.target.websocket and (self.retries or self.deadline_seconds is not None):
            raise ConfigError("retries", "retries and deadlines apply to http:// requests, not to "
                              "the messages of a ws:// run")
        if not self.target.tls:
            for name, asked in (("insecure", self.insecure), ("ca_file", self.ca_file),
                                ("tls_resume", self.tls_resume)):
                if asked:
                    raise ConfigError(name, "applies to https:// and wss:// targets only")
        if self.insecure and self.ca_file:
            raise ConfigError("ca_file", "checks the certificate, which insecure does not: give one")
        # Each names the half that is missing (a flag on the CLI, a field in Python).
        if self.pause_every_seconds is None and self.pause_ms:
            raise ConfigError("pause_every_seconds", "a pause of the generator's loop needs how "
                              "often, besides its length")
        if self.pause_every_seconds is not None and not self.pause_ms:
            raise ConfigError("pause_ms", "a pause of the generator's loop needs its length "
                              "(above 0 ms), besides how often")
        parse_thresholds(self.thresholds)
        require_loopback(parse_target(self.url).host, allow_remote=self.allow_remote)

    def _check_stages(self) -> None:
        if self.mode != "open":
            raise ConfigError("stages", "stages are rates of the open loop; set mode='open'")
        if self.rate is not None:
            raise ConfigError("stages", "give either a rate or stages, not both")
        if self.warmup_seconds:
            raise ConfigError("stages", "stages plan the whole run; make a warm-up the first stage")
        total = self.schedule.duration_s
        # The stages are the run's plan: its duration is theirs (frozen, so set it this way).
        if not 0.01 <= total <= 24 * 3600:
            raise ConfigError("stages", f"they last {total:g} s; allowed: 0.01 s to 24 h in all")
        object.__setattr__(self, "duration_seconds", total)

    @property
    def stage_plan(self) -> tuple[Stage, ...]:
        return parse_stages(self.stages)

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.stage_plan)

    def replace(self, **changes: Any) -> LoadSpec:
        """A copy with some knobs changed, validated like a new one."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(unknown[0], "unknown load setting")
        return dataclasses.replace(self, **changes)

    @property
    def target(self) -> Target:
        return parse_target(self.url)

    @property
    def request_paths(self) -> tuple[str, ...]:
        return self.paths or (self.target.path,)


RETRY_KINDS = ("timeout", "5xx", "reset", "connect")


def retry_kinds(text: str) -> frozenset[str]:
    """``--retry-on timeout,5xx``: the failure kinds to retry (a ConfigError naming ``retry_on``)."""
    kinds = frozenset(word.strip() for word in text.split(",") if word.strip())
    unknown = sorted(kinds - set(RETRY_KINDS))
    if unknown:
        raise ConfigError("retry_on", f"{unknown[0]!r} is not allowed; allowed: a comma-separated "
                          f"list of {', '.join(RETRY_KINDS)}")
    return kinds


@dataclass(frozen=True)
class Target:
    host: str  # a literal address or a name, as written in the URL
    port: int
    path: str  # path plus query, at least "/"
    host_header: str
    websocket: bool = False  # a ws:// or wss:// URL: messages on an upgraded connection
    tls: bool = False  # https:// or wss://


SCHEMES = {"http": (False, False), "ws": (True, False), "https": (False, True), "wss": (True, True)}


def parse_target(url: str) -> Target:
    """Split an ``http://``, ``https://``, ``ws://`` or ``wss://`` URL; anything else is a
    :class:`ConfigError` naming ``url``."""
    parts = urlsplit(url)
    if url.startswith("/"):
        raise ConfigError("url", f"{url!r} is a path: give the whole URL, e.g. "
                          f"http://127.0.0.1:8080{url}")
    if "://" not in url:  # 127.0.0.1:8080/fast, as curl and wrk's users often type it
        raise ConfigError("url", f"{url!r} has no scheme: write http://{url} (ws:// for "
                          "WebSocket)")
    if parts.scheme not in SCHEMES:
        raise ConfigError("url", f"{url!r}: only http://, https://, ws:// and wss:// targets are supported")
    websocket, tls = SCHEMES[parts.scheme]
    if not parts.hostname:
        raise ConfigError("url", f"{url!r} has no host")
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError as error:
        raise ConfigError("url", f"{url!r}: {error}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(host=parts.hostname, port=port, path=path, host_header=parts.netloc,
                  websocket=websocket, tls=tls)


def message_payload(spec: LoadSpec) -> bytes:
    """The bytes of each WebSocket message: ASCII, so a text frame is valid UTF-8 too."""
    pattern = b"0123456789abcdef"
    return (pattern * (spec.message_bytes // len(pattern) + 1))[:spec.message_bytes]


def build_request(spec: LoadSpec, path: str) -> bytes:
    """The exact bytes of one request, built once and sent as they are on every request."""
    target = spec.target
    lines = [f"{spec.method} {path} HTTP/1.1", f"Host: {target.host_header}"]
    given = {name.lower() for name, _ in spec.headers}
    lines += [f"{name}: {value}" for name, value in spec.headers]
    body = spec.body.encode()
    if (body or spec.method in ("POST", "PUT", "PATCH")) and "content-length" not in given:
        lines.append(f"Content-Length: {len(body)}")
    if not spec.keepalive and "connection" not in given:
        lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + body


def worker_connections(spec: LoadSpec, worker: int) -> int:
    """This worker's share of the connections (the first ones take the remainder)."""
    share, remainder = divmod(spec.connections, spec.workers)
    return share + (1 if worker < remainder else 0)


def worker_max_requests(spec: LoadSpec, worker: int) -> int | None:
    if spec.max_requests is None:
        return None
    share, remainder = divmod(spec.max_requests, spec.workers)
    return share + (1 if worker < remainder else 0)

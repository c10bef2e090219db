"""TLS for the generator's lanes (https://, wss://): one client context per process, the
session kept to resume, and what every handshake negotiated or why it failed, counted.

A lane opens its TCP connection itself and hands the socket to the event loop's own TLS
(``loop.create_connection(sock=..., ssl=...)``: uvloop's SSL protocol, in Cython), so that

- the handshake is timed from the TCP connection being up to its end -- the end is when the
  loop calls the lane's ``connection_made``, in the same call that finished the handshake,
  before any other callback runs (see :class:`~lab.engine.lane.TlsWire`);
- the request path stays the loop's: records are encrypted and decrypted in C, and a lane's
  ``on_data`` gets plain bytes as it does over TCP. Doing the TLS in the lane's own protocol
  over ``ssl.MemoryBIO`` would put a Python call per record on every request and answer.

The loop's TLS takes no session to offer, so the context offers one itself: with
``--tls-resume`` its ``wrap_bio`` (which the loop calls to start each client handshake) is
this process's own, passing the session kept from an earlier connection. Every connection of
a process goes to the same server, so any of its sessions will do, as a browser keeps one
session cache per host; the newest is kept, since a TLS 1.3 server that keeps its sessions
in a cache lets each ticket be used once.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from pathlib import Path
from typing import Any

from lab.engine.plan import TlsPlan
from lab.measure.samples import ErrorKind

# OpenSSL's reasons for a handshake that met something other than TLS: a plain-HTTP server's
# answer to the ClientHello ("HTTP/1.1 400 ...") reads as a record of an unknown version.
NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG",
                     "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "RECORD_LENGTH_MISMATCH"})
NO_COMMON_VERSION = frozenset({"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION",
                               "NO_PROTOCOLS_AVAILABLE", "WRONG_SSL_VERSION", "VERSION_TOO_LOW",
                               "VERSION_TOO_HIGH", "TLSV1_ALERT_INAPPROPRIATE_FALLBACK"})
INSECURE_HINT = "--insecure skips the check"


class HandshakeFailed(ConnectionError):
    """A TLS handshake that did not end in a connection; ``reason`` says why, in words."""

    kind = ErrorKind.TLS_FAILED

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def failure_reason(error: BaseException, timeout_s: float) -> str:
    """Why a handshake failed, in one line that starts with its kind: ``certificate``,
    ``version``, ``not TLS``, ``timeout`` or ``closed``."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate: {error.verify_message or error.reason} ({INSECURE_HINT})"
    if isinstance(error, ssl.CertificateError):
        return f"certificate: {error} ({INSECURE_HINT})"
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError)):
        return "closed: the server closed the connection during the handshake"
    if isinstance(error, ssl.SSLError):
        reason = str(error.reason or "")
        if reason in NOT_TLS:
            return "not TLS: the server did not answer the handshake in TLS (a plain-HTTP port?)"
        if reason in NO_COMMON_VERSION:
            return f"version: no TLS version both ends accept ({reason.lower().replace('_', ' ')})"
        return f"TLS error: {reason.lower().replace('_', ' ') or error}"
    if isinstance(error, (ConnectionAbortedError, TimeoutError)):
        return timeout_reason(timeout_s)
    return f"{type(error).__name__}: {error}"


def timeout_reason(timeout_s: float) -> str:
    return f"timeout: the handshake did not end within {timeout_s:g} s"


class TlsClient:
    """The TLS side of one generator process: its context, its session, its counts."""

    def __init__(self, plan: TlsPlan, *, timeout_s: float) -> None:
        # Here, not at the top: lab.tls imports cryptography (~0.2 s, ~200 M instructions),
        # which a plain run's worker process never needs.
        from lab.tls import client_context

        self.context = client_context(insecure=plan.insecure,
                                      ca_file=Path(plan.ca_file) if plan.ca_file else None)
        # The name the certificate must carry, and the SNI: the URL's host, as a browser's.
        self.server_hostname = plan.server_hostname
        self.timeout_s = timeout_s
        self.session: ssl.SSLSession | None = None  # the one a new connection offers
        self.resume = plan.resume
        if plan.resume:
            self.context.wrap_bio = self._wrap_bio  # type: ignore[method-assign]
        self.handshakes = 0
        self.resumed = 0
        self.versions: collections.Counter[str] = collections.Counter()
        self.ciphers: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()

    def _wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                  server_hostname: str | bytes | None = None,
                  session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return ssl.SSLContext.wrap_bio(self.context, incoming, outgoing, server_side=server_side,
                                       server_hostname=server_hostname, session=session or self.session)

    def negotiated(self, transport: asyncio.BaseTransport) -> int:
        """Count what a new connection's handshake agreed on; 1 if it resumed a session, else 0."""
        tls: ssl.SSLObject = transport.get_extra_info("ssl_object")
        self.handshakes += 1
        self.versions[tls.version() or "?"] += 1
        cipher = tls.cipher()
        self.ciphers[cipher[0] if cipher else "?"] += 1
        resumed = int(tls.session_reused)
        self.resumed += resumed
        return resumed

    def keep_session(self, transport: asyncio.BaseTransport) -> None:
        """Keep a connection's session to offer on the next new one (``--tls-resume``). Read as
        the connection ends: TLS 1.3 sends its tickets after the handshake, with the first
        answer, and a session without one cannot be resumed."""
        if not self.resume:
            return
        tls: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        session = None if tls is None else tls.session
        if session is not None and (session.has_ticket or tls.version() == "TLSv1.2"):  # type: ignore[union-attr]
            self.session = session

    def failed(self, error: BaseException) -> HandshakeFailed:
        """Count a failed handshake; the error a lane's connect raises for it."""
        reason = failure_reason(error, self.timeout_s)
        self.failures[reason] += 1
        return HandshakeFailed(reason)

    def timed_out(self) -> None:
        """Count a handshake the request's timeout ended."""
        self.failures[timeout_reason(self.timeout_s)] += 1

    def counts(self) -> dict[str, Any]:
        """Plain values, for the worker's report (lab.measure.run.tls_counts reads them)."""
        return {"handshakes": self.handshakes, "resumed": self.resumed, "versions": dict(self.versions),
                "ciphers": dict(self.ciphers), "failures": dict(self.failures)}

    def nothing_negotiated(self, lanes: int) -> str | None:
        """Why the run should end now: every lane's handshake failed and none ever succeeded
        (a certificate the lab does not trust fails every time, as a closed port does)."""
        failed = sum(self.failures.values())
        if self.handshakes or failed < lanes:
            return None
        reason = self.failures.most_common(1)[0][0]
        return f"TLS handshake failed on every connection -- {reason}"


def check_settings(plan: TlsPlan) -> None:
    """Make the context a run's workers will make, here, first: a CA file that cannot be read
    is the user's mistake (a ConfigError naming ``ca_file``) before any process starts, and
    the lab's CA exists before workers look for it."""
    from lab.tls import client_context

    client_context(insecure=plan.insecure, ca_file=Path(plan.ca_file) if plan.ca_file else None)


def merge_counts(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several processes' counts as one run's; None when none had TLS."""
    if not parts:
        return None
    merged: dict[str, Any] = {"handshakes": 0, "resumed": 0, "versions": collections.Counter(),
                              "ciphers": collections.Counter(), "failures": collections.Counter()}
    for part in parts:
        merged["handshakes"] += part["handshakes"]
        merged["resumed"] += part["resumed"]
        for key in ("versions", "ciphers", "failures"):
            merged[key].update(part[key])
    return {key: dict(value) if isinstance(value, collections.Counter) else value
            for key, value in merged.items()}

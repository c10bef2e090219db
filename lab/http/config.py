"""The server's configuration: the one definition of every server knob.

The API (``ServerConfig(...)``, ``handle.reconfigure(...)``), the CLI (``python -m lab serve``)
and the notebook widgets all derive from the field declarations below; so do the server's
runtime settings, the socket options it writes and reads back, and the docs' table of when a
change takes effect, from each knob's ``applies`` (lab/http/knobs.py).
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Literal

from lab.errors import ConfigError
from lab.http.knobs import SocketOption, Where, linger_option
from lab.options import knob, validate
from lab.tls import KEY_TYPES, TLS_VERSIONS, server_context
from lab.units import KIB, MIB

# The socket options among the knobs. uvloop and asyncio both turn TCP_NODELAY on for every
# accepted socket, so nodelay is written either way ("off" must mean Nagle is on); the others
# only when set.
NODELAY = SocketOption(level=socket.IPPROTO_TCP, name=socket.TCP_NODELAY, decode=bool, unset=())
LINGER = linger_option()
# Three states, because writing TCP_QUICKACK=0 is not "leave it alone": it puts the connection
# in delayed-ACK ("ping-pong") mode at once, which no stock server does. None (the default)
# writes nothing; True is re-armed after each read (Linux clears it once it has acknowledged);
# False is written once, at accept or on a live change. Reading it back gives the kernel's
# mode: True while the connection is not in delayed-ACK mode. Nothing writes "kernel default"
# back to an open connection (reset stays None): a live change to None stops re-arming and
# leaves a forced mode as it is until the kernel leaves it.
QUICKACK = SocketOption(level=socket.IPPROTO_TCP, name=socket.TCP_QUICKACK, decode=bool)
# Set on the listener too: SO_RCVBUF must be set before listen for the window scale to match
# it, and accepted sockets inherit both sizes. Set while connected, the send side takes it at
# once; None cannot be undone (autotuning cannot be switched back on).
SEND_BUFFER = SocketOption(level=socket.SOL_SOCKET, name=socket.SO_SNDBUF, on_listener=True)
RECV_BUFFER = SocketOption(level=socket.SOL_SOCKET, name=socket.SO_RCVBUF, on_listener=True)


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    # --- where it listens -------------------------------------------------------------------
    host: str = knob("127.0.0.1", help="address to bind; 127.0.0.1 unless you mean otherwise",
                     flag="--host", applies=Where.LISTENER, group="listener", widget=False)
    port: int = knob(0, minimum=0, maximum=65535, help="TCP port; 0 picks a free one",
                     flag="--port", applies=Where.LISTENER, group="listener", widget=False)
    backlog: int = knob(1024, minimum=1, maximum=65535, help="listen() backlog",
                        flag="--backlog", applies=Where.LISTENER, group="listener", widget=False)
    loop: Literal["uvloop", "asyncio"] = knob(
        "uvloop", choices=("uvloop", "asyncio"), help="event loop implementation",
        flag="--loop", applies=Where.LISTENER, group="listener")
    workers: int = knob(1, minimum=1, maximum=64,
                        help="server processes sharing the port with SO_REUSEPORT",
                        flag="--workers", applies=Where.LISTENER, group="listener")

    # --- TCP options (the seed article's knobs) ---------------------------------------------
    nodelay: bool = knob(True, help="TCP_NODELAY: send small writes at once instead of "
                         "letting Nagle's algorithm hold them", flag="--nodelay", group="tcp",
                         applies=NODELAY)
    linger_seconds: int | None = knob(
        None, minimum=0, maximum=3600, unit="s",
        help="SO_LINGER on close; None = OS default (orderly FIN), 0 = reset (RST, no TIME_WAIT)",
        flag="--linger", metavar="SECONDS", group="tcp", applies=LINGER)
    quickack: bool | None = knob(
        None, help="TCP_QUICKACK: on acknowledges at once (set again after every receive; Linux "
        "does not keep it), off forces delayed-ACK mode; kernel default writes nothing (a new "
        "connection starts in quick-ACK mode) and, on a live change, leaves open connections "
        "as they are", flag="--quickack", group="tcp", applies=QUICKACK,
        none_label="kernel default")
    send_buffer_bytes: int | None = knob(
        None, minimum=1 * KIB, maximum=64 * MIB, unit="bytes",
        help="SO_SNDBUF (the kernel doubles it); None = OS default with autotuning",
        flag="--send-buffer", metavar="BYTES", group="buffers",
        applies=SEND_BUFFER)
    recv_buffer_bytes: int | None = knob(
        None, minimum=1 * KIB, maximum=64 * MIB, unit="bytes",
        help="SO_RCVBUF (the kernel doubles it; setting it disables receive autotuning)",
        flag="--recv-buffer", metavar="BYTES", group="buffers",
        applies=RECV_BUFFER)
    read_buffer_bytes: int = knob(
        64 * KIB, minimum=256, maximum=16 * MIB, unit="bytes",
        help="bytes asked of each recv() (the article's http_buffer_size)",
        flag="--read-buffer", metavar="BYTES", group="buffers",
        applies=Where.SOCKET)

    # --- HTTP behaviour ---------------------------------------------------------------------
    keepalive: bool = knob(True, help="keep connections open between requests",
                           flag="--keepalive", group="http", applies=Where.REQUEST)
    keepalive_timeout_seconds: float = knob(
        5.0, minimum=0.01, maximum=3600, unit="s",
        help="close an idle keep-alive connection after this long",
        flag="--keepalive-timeout", metavar="S", group="http", applies=Where.REQUEST)
    keepalive_max_requests: int | None = knob(
        None, minimum=1, maximum=1_000_000_000,
        help="close a connection after this many responses (None = no limit)",
        flag="--keepalive-max", metavar="N", group="http", applies=Where.REQUEST)
    split_writes: bool = knob(False, help="send headers and body as two writes, and each "
                              "WebSocket frame's header and payload too (with Nagle on, shows "
                              "the delayed-ACK stall)",
                              flag="--split-writes", group="http", applies=Where.REQUEST)
    processing_time_header: bool = knob(
        False, help="add X-Processing-Time (server-side microseconds) to responses",
        flag="--processing-time-header", group="http", applies=Where.REQUEST)

    # --- limits -----------------------------------------------------------------------------
    max_header_bytes: int = knob(16 * KIB, minimum=256, maximum=1 * MIB, unit="bytes",
                                 help="largest request line plus headers; more gets 431",
                                 flag="--max-header-bytes", metavar="BYTES", group="limits",
                                 applies=Where.REQUEST)
    max_body_bytes: int = knob(1 * MIB, minimum=0, maximum=1024 * MIB, unit="bytes",
                               help="largest request body; more gets 413",
                               flag="--max-body-bytes", metavar="BYTES", group="limits",
                               applies=Where.REQUEST)
    header_timeout_seconds: float = knob(
        10.0, minimum=0.01, maximum=3600, unit="s",
        help="answer 408 and close when a request's headers take longer than this to arrive "
             "(paused while the server itself is not reading)",
        flag="--header-timeout", metavar="S", group="limits", applies=Where.REQUEST)
    body_timeout_seconds: float = knob(
        10.0, minimum=0.01, maximum=3600, unit="s",
        help="answer 408 and close when a request body makes no progress for this long "
             "(the longest gap between two reads of it)",
        flag="--body-timeout", metavar="S", group="limits", applies=Where.REQUEST)
    send_timeout_seconds: float = knob(
        60.0, minimum=0.01, maximum=3600, unit="s",
        help="close a connection whose answer makes no progress for this long (a client that "
             "stopped reading), freeing what was buffered for it",
        flag="--send-timeout", metavar="S", group="limits", applies=Where.REQUEST)
    # A gap timeout alone lets a client trickle a byte just inside each gap and hold the
    # connection for ever (nginx's client_body_timeout has that hole); Apache's mod_reqtimeout
    # adds a minimum rate, its default 500 bytes/s. The grace lets a request start slowly.
    header_min_bytes_per_second: int | None = knob(
        500, minimum=1, maximum=1024 * MIB, unit="bytes/s", label="head min rate",
        help="answer 408 and close when a request head, once min_rate_grace_seconds have passed, "
             "has arrived slower than this on average (None = no minimum)",
        flag="--header-min-rate", metavar="BYTES", group="limits", applies=Where.REQUEST)
    body_min_bytes_per_second: int | None = knob(
        500, minimum=1, maximum=1024 * MIB, unit="bytes/s", label="body min rate",
        help="answer 408 and close when a request body, once min_rate_grace_seconds have passed, "
             "has arrived slower than this on average (None = no minimum)",
        flag="--body-min-rate", metavar="BYTES", group="limits", applies=Where.REQUEST)
    min_rate_grace_seconds: float = knob(
        5.0, minimum=0.01, maximum=3600, unit="s",
        help="how long a request head or body may arrive at any rate before the minimum rates apply",
        flag="--min-rate-grace", metavar="S", group="limits", applies=Where.REQUEST)
    max_connections: int | None = knob(
        10_000, minimum=1, maximum=1_000_000,
        help="open connections beyond this get 503 and are closed (None = no limit); an idle "
             "connection costs the server a few kB, so the default is ~50 MB at most. With --tls "
             "handshakes under way count too, and one beyond is closed at accept (no TLS yet to "
             "answer in); a TLS connection costs ~20 kB open, ~60 kB mid-handshake",
        flag="--max-connections", metavar="N", group="limits", applies=Where.ACCEPT)

    # --- WebSocket (routes under /ws/) ---------------------------------------------------------
    ws_buffer_size: int = knob(
        64 * KIB, minimum=256, maximum=16 * MIB, unit="bytes",
        help="bytes asked of each recv() on an upgraded connection, parsed into frames at once "
             "(the article's ws_buffer_size)", flag="--ws-buffer-size", metavar="BYTES",
        group="websocket", applies=Where.WEBSOCKET)
    ws_max_message_bytes: int = knob(
        1 * MIB, minimum=1, maximum=1024 * MIB, unit="bytes",
        help="largest WebSocket message (all its fragments); more is closed with 1009",
        flag="--ws-max-message-bytes", metavar="BYTES", group="websocket", applies=Where.WEBSOCKET)
    ws_compression: bool = knob(
        False, help="offer permessage-deflate (RFC 7692) to clients that ask: fewer bytes, more CPU",
        flag="--ws-compression", group="websocket", applies=Where.WEBSOCKET)
    ws_compression_level: int = knob(
        6, minimum=0, maximum=9, help="zlib level of permessage-deflate (1 fastest, 9 smallest)",
        flag="--ws-compression-level", metavar="N", group="websocket", applies=Where.WEBSOCKET)
    ws_idle_timeout_seconds: float = knob(
        60.0, minimum=0.01, maximum=3600, unit="s",
        help="close a WebSocket connection (1001 going away) after this long without a message",
        flag="--ws-idle-timeout", metavar="S", group="websocket",
        applies=Where.WEBSOCKET_MESSAGE)
    # A message may come in fragments (RFC 6455 section 5.4), each a frame the library parses
    # in Python: 500,000 empty ones cost seconds of the loop and no memory, so neither the
    # size limit nor the idle timeout (each fragment is traffic) ever ends them.
    ws_max_fragments: int = knob(
        1024, minimum=1, maximum=1_000_000,
        help="most frames one WebSocket message may arrive in; more is closed with 1008 "
             "(policy violation)", flag="--ws-max-fragments", metavar="N", group="websocket",
        applies=Where.WEBSOCKET_MESSAGE)
    ws_message_timeout_seconds: float = knob(
        10.0, minimum=0.01, maximum=3600, unit="s",
        help="close a WebSocket (1008 policy violation) whose message takes longer than this "
             "from its first fragment to its last", flag="--ws-message-timeout", metavar="S",
        group="websocket", applies=Where.WEBSOCKET_MESSAGE)

    # --- TLS (issue 25; lab/tls.py makes the contexts) ----------------------------------------
    # On/off re-creates the listener: every client must reconnect with another scheme anyway.
    # The others make a new SSLContext for connections accepted after the change; a change to
    # anything else keeps the context, and with it the sessions it can resume.
    tls: bool = knob(False, help="serve HTTPS and wss:// with a certificate of the lab's own CA "
                     "(made once per user; the lab's generator trusts it), or --cert/--key's",
                     flag="--tls", group="tls", applies=Where.LISTENER)
    tls_cert_file: str | None = knob(
        None, help="your own certificate chain (PEM) instead of the lab's; with --key and --tls",
        flag="--cert", metavar="FILE", group="tls", applies=Where.ACCEPT, widget=False)
    tls_key_file: str | None = knob(
        None, help="the private key (PEM, no passphrase) of --cert", flag="--key", metavar="FILE",
        group="tls", applies=Where.ACCEPT, widget=False)
    tls_key_type: Literal["ecdsa-p256", "rsa-2048", "rsa-4096"] = knob(
        "ecdsa-p256", choices=KEY_TYPES,
        help="key of the lab's certificate: what each full handshake signs with (ECDSA P-256 is "
             "cheap to sign, RSA 4096 costs the server most); not used with --cert",
        flag="--tls-key-type", group="tls", applies=Where.ACCEPT)
    tls_min_version: Literal["1.2", "1.3"] = knob(
        "1.2", choices=TLS_VERSIONS, help="oldest TLS version accepted (OpenSSL's default: 1.2)",
        flag="--tls-min-version", group="tls", applies=Where.ACCEPT)
    tls_max_version: Literal["1.2", "1.3"] = knob(
        "1.3", choices=TLS_VERSIONS,
        help="newest TLS version offered; 1.2 makes a full handshake 2 round trips instead of 1",
        flag="--tls-max-version", group="tls", applies=Where.ACCEPT)
    tls_session_tickets: bool = knob(
        True, help="session resumption: tickets (TLS 1.2 and 1.3) and TLS 1.2's session-ID "
        "cache, as OpenSSL does by default; off makes every new connection a full handshake",
        flag="--tls-session-tickets", group="tls", applies=Where.ACCEPT)
    tls_alpn: str = knob(
        "http/1.1", help="ALPN protocols offered, comma-separated ('' offers none): what a "
        "client that asks is told the connection speaks", flag="--tls-alpn", metavar="LIST",
        group="tls", applies=Where.ACCEPT)
    # uvloop's and asyncio's own default is 60 s; a stalled handshake holds a connection slot,
    # so it gets the header timeout's 10 s, which is what the next phase would allow.
    tls_handshake_timeout_seconds: float = knob(
        10.0, minimum=0.01, maximum=3600, unit="s",
        help="close a connection whose TLS handshake is not done this long after it was accepted",
        flag="--tls-handshake-timeout", metavar="S", group="tls", applies=Where.ACCEPT)

    # --- stall injector (coordinated-omission experiments) ----------------------------------
    stall_every_seconds: float | None = knob(
        None, minimum=0.01, maximum=3600, unit="s",
        help="freeze the whole event loop this often (None = never), as a GC pause would",
        flag="--stall-every", metavar="S", group="stall", applies=Where.LOOP)
    stall_ms: float = knob(0.0, minimum=0, maximum=60_000, unit="ms",
                           help="how long each stall freezes the loop", label="stall length",
                           flag="--stall-ms", metavar="MS", group="stall", applies=Where.LOOP)

    def __post_init__(self) -> None:
        validate(self)
        if not self.host:
            raise ConfigError("host", "must not be empty")
        self._check_tls()

    def _check_tls(self) -> None:
        """What can be checked without reading a file (server_tls_context reads them)."""
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            missing = "tls_key_file" if self.tls_key_file is None else "tls_cert_file"
            raise ConfigError(missing, "give the certificate and its key together (--cert and --key)")
        if self.tls_cert_file is not None and not self.tls:
            raise ConfigError("tls_cert_file", "a certificate is served only with --tls (tls=True)")
        if TLS_VERSIONS.index(self.tls_min_version) > TLS_VERSIONS.index(self.tls_max_version):
            raise ConfigError("tls_max_version",
                              f"{self.tls_max_version} is below tls_min_version {self.tls_min_version}")
        for protocol in self.alpn_protocols():
            if len(protocol.encode()) > 255:
                raise ConfigError("tls_alpn", f"{protocol[:20]!r}...: a protocol name is at most 255 bytes")

    def alpn_protocols(self) -> tuple[str, ...]:
        """``tls_alpn`` as a list: ``"h2, http/1.1"`` -> ``("h2", "http/1.1")``."""
        return tuple(word.strip() for word in self.tls_alpn.split(",") if word.strip())

    def replace(self, **changes: Any) -> ServerConfig:
        """A copy with some knobs changed, validated like a new one."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(unknown[0], "unknown server setting")
        return dataclasses.replace(self, **changes)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def keepalive_header_value(self) -> str:
        """The ``Keep-Alive`` response header (RFC 7230 appendix A.1.2 / MDN's format)."""
        value = f"timeout={self.keepalive_timeout_seconds:g}"
        if self.keepalive_max_requests is not None:
            value += f", max={self.keepalive_max_requests}"
        return value


# The knobs that make up a server's SSLContext: a change to any of them makes a new one.
TLS_CONTEXT_KNOBS = ("tls", "tls_cert_file", "tls_key_file", "tls_key_type", "tls_min_version",
                     "tls_max_version", "tls_session_tickets", "tls_alpn")


def server_tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The SSLContext of ``config``'s TLS knobs; None without ``tls``. A certificate that cannot
    be read is a ConfigError naming ``tls_cert_file`` or ``tls_key_file``."""
    if not config.tls:
        return None
    return server_context(cert_file=config.tls_cert_file, key_file=config.tls_key_file,
                          key_type=config.tls_key_type, min_version=config.tls_min_version,
                          max_version=config.tls_max_version,
                          session_tickets=config.tls_session_tickets, alpn=config.alpn_protocols())

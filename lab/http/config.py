"""The server's configuration: the one definition of every server knob.

The API (``ServerConfig(...)``, ``handle.reconfigure(...)``), the CLI (``python -m lab serve``)
and the notebook widgets all derive from the field declarations below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from lab.errors import ConfigError
from lab.options import knob, validate
from lab.units import KIB, MIB


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    # --- where it listens -------------------------------------------------------------------
    host: str = knob("127.0.0.1", help="address to bind; 127.0.0.1 unless you mean otherwise",
                     flag="--host", restart=True, group="listener", widget=False)
    port: int = knob(0, minimum=0, maximum=65535, help="TCP port; 0 picks a free one",
                     flag="--port", restart=True, group="listener", widget=False)
    backlog: int = knob(1024, minimum=1, maximum=65535, help="listen() backlog",
                        flag="--backlog", restart=True, group="listener", widget=False)
    loop: Literal["uvloop", "asyncio"] = knob(
        "uvloop", choices=("uvloop", "asyncio"), help="event loop implementation",
        flag="--loop", restart=True, group="listener")
    workers: int = knob(1, minimum=1, maximum=64,
                        help="server processes sharing the port with SO_REUSEPORT",
                        flag="--workers", restart=True, group="listener")

    # --- TCP options (the seed article's knobs) ---------------------------------------------
    nodelay: bool = knob(True, help="TCP_NODELAY: send small writes at once instead of "
                         "letting Nagle's algorithm hold them", flag="--nodelay", group="tcp")
    linger_seconds: int | None = knob(
        None, minimum=0, maximum=3600, unit="s",
        help="SO_LINGER on close; None = OS default (orderly FIN), 0 = reset (RST, no TIME_WAIT)",
        flag="--linger", metavar="SECONDS", group="tcp")
    quickack: bool = knob(False, help="TCP_QUICKACK: acknowledge at once rather than delay ACKs "
                          "(set again around every receive; Linux does not keep it)",
                          flag="--quickack", group="tcp")
    send_buffer_bytes: int | None = knob(
        None, minimum=1 * KIB, maximum=64 * MIB, unit="bytes",
        help="SO_SNDBUF (the kernel doubles it); None = OS default with autotuning",
        flag="--send-buffer", metavar="BYTES", group="buffers")
    recv_buffer_bytes: int | None = knob(
        None, minimum=1 * KIB, maximum=64 * MIB, unit="bytes",
        help="SO_RCVBUF (the kernel doubles it; setting it disables receive autotuning)",
        flag="--recv-buffer", metavar="BYTES", group="buffers")
    read_buffer_bytes: int = knob(
        64 * KIB, minimum=256, maximum=16 * MIB, unit="bytes",
        help="bytes asked of each recv() (the article's http_buffer_size)",
        flag="--read-buffer", metavar="BYTES", group="buffers")

    # --- HTTP behaviour ---------------------------------------------------------------------
    keepalive: bool = knob(True, help="keep connections open between requests",
                           flag="--keepalive", group="http")
    keepalive_timeout_seconds: float = knob(
        5.0, minimum=0.01, maximum=3600, unit="s",
        help="close an idle keep-alive connection after this long",
        flag="--keepalive-timeout", metavar="S", group="http")
    keepalive_max_requests: int | None = knob(
        None, minimum=1, maximum=1_000_000_000,
        help="close a connection after this many responses (None = no limit)",
        flag="--keepalive-max", metavar="N", group="http")
    split_writes: bool = knob(False, help="send headers and body as two writes, and each "
                              "WebSocket frame's header and payload too (with Nagle on, shows "
                              "the delayed-ACK stall)",
                              flag="--split-writes", group="http")
    processing_time_header: bool = knob(
        False, help="add X-Processing-Time (server-side microseconds) to responses",
        flag="--processing-time-header", group="http")

    # --- limits -----------------------------------------------------------------------------
    max_header_bytes: int = knob(16 * KIB, minimum=256, maximum=1 * MIB, unit="bytes",
                                 help="largest request line plus headers; more gets 431",
                                 flag="--max-header-bytes", metavar="BYTES", group="limits")
    max_body_bytes: int = knob(1 * MIB, minimum=0, maximum=1024 * MIB, unit="bytes",
                               help="largest request body; more gets 413",
                               flag="--max-body-bytes", metavar="BYTES", group="limits")
    header_timeout_seconds: float = knob(
        10.0, minimum=0.01, maximum=3600, unit="s",
        help="answer 408 and close when a request's headers take longer than this to arrive "
             "(paused while the server itself is not reading)",
        flag="--header-timeout", metavar="S", group="limits")
    body_timeout_seconds: float = knob(
        10.0, minimum=0.01, maximum=3600, unit="s",
        help="answer 408 and close when a request body makes no progress for this long "
             "(the longest gap between two reads of it)",
        flag="--body-timeout", metavar="S", group="limits")
    send_timeout_seconds: float = knob(
        60.0, minimum=0.01, maximum=3600, unit="s",
        help="close a connection whose answer makes no progress for this long (a client that "
             "stopped reading), freeing what was buffered for it",
        flag="--send-timeout", metavar="S", group="limits")
    max_connections: int | None = knob(
        None, minimum=1, maximum=1_000_000,
        help="open connections beyond this get 503 and are closed (None = no limit)",
        flag="--max-connections", metavar="N", group="limits")

    # --- WebSocket (routes under /ws/) ---------------------------------------------------------
    ws_buffer_size: int = knob(
        64 * KIB, minimum=256, maximum=16 * MIB, unit="bytes",
        help="bytes asked of each recv() on an upgraded connection, parsed into frames at once "
             "(the article's ws_buffer_size)", flag="--ws-buffer-size", metavar="BYTES",
        group="websocket")
    ws_max_message_bytes: int = knob(
        1 * MIB, minimum=1, maximum=1024 * MIB, unit="bytes",
        help="largest WebSocket message (all its fragments); more is closed with 1009",
        flag="--ws-max-message-bytes", metavar="BYTES", group="websocket")
    ws_compression: bool = knob(
        False, help="offer permessage-deflate (RFC 7692) to clients that ask: fewer bytes, more CPU",
        flag="--ws-compression", group="websocket")
    ws_compression_level: int = knob(
        6, minimum=0, maximum=9, help="zlib level of permessage-deflate (1 fastest, 9 smallest)",
        flag="--ws-compression-level", metavar="N", group="websocket")
    ws_idle_timeout_seconds: float = knob(
        60.0, minimum=0.01, maximum=3600, unit="s",
        help="close a WebSocket connection (1001 going away) after this long without a message",
        flag="--ws-idle-timeout", metavar="S", group="websocket")

    # --- stall injector (coordinated-omission experiments) ----------------------------------
    stall_every_seconds: float | None = knob(
        None, minimum=0.01, maximum=3600, unit="s",
        help="freeze the whole event loop this often (None = never), as a GC pause would",
        flag="--stall-every", metavar="S", group="stall")
    stall_ms: float = knob(0.0, minimum=0, maximum=60_000, unit="ms",
                           help="how long each stall freezes the loop", label="stall length",
                           flag="--stall-ms", metavar="MS", group="stall")

    def __post_init__(self) -> None:
        validate(self)
        if not self.host:
            raise ConfigError("host", "must not be empty")

    def replace(self, **changes: Any) -> ServerConfig:
        """A copy with some knobs changed, validated like a new one."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(unknown[0], "unknown server setting")
        return dataclasses.replace(self, **changes)

    def keepalive_header_value(self) -> str:
        """The ``Keep-Alive`` response header (RFC 7230 appendix A.1.2 / MDN's format)."""
        value = f"timeout={self.keepalive_timeout_seconds:g}"
        if self.keepalive_max_requests is not None:
            value += f", max={self.keepalive_max_requests}"
        return value

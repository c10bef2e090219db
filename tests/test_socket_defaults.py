"""A default lab server leaves its accepted sockets as the kernel made them, but for TCP_NODELAY,
which every uvloop and asyncio server turns on (docs/socket-defaults.md lists the values)."""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass

from rawhttp import GET_FAST, Reader, connect, get

from lab.http.config import ServerConfig
from lab.http.knobs import SocketOption
from lab.options import knob
from lab.server import start_server

# Options the lab has no knob for, read back through /sockopts as extra knobs left unset.
EXTRA_OPTIONS = {
    "so_keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "tcp_keepidle": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    "tcp_keepintvl": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    "tcp_keepcnt": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    "tcp_user_timeout": (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    "tcp_cork": (socket.IPPROTO_TCP, socket.TCP_CORK),
    "tcp_notsent_lowat": (socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT),
}


def _read_only(level: int, name: int) -> object:
    return knob(None, help="read back only", group="tcp",
                applies=SocketOption(level=level, name=name))


@dataclass(frozen=True, kw_only=True)
class ReadBackConfig(ServerConfig):
    so_keepalive: int | None = _read_only(*EXTRA_OPTIONS["so_keepalive"])
    tcp_keepidle: int | None = _read_only(*EXTRA_OPTIONS["tcp_keepidle"])
    tcp_keepintvl: int | None = _read_only(*EXTRA_OPTIONS["tcp_keepintvl"])
    tcp_keepcnt: int | None = _read_only(*EXTRA_OPTIONS["tcp_keepcnt"])
    tcp_user_timeout: int | None = _read_only(*EXTRA_OPTIONS["tcp_user_timeout"])
    tcp_cork: int | None = _read_only(*EXTRA_OPTIONS["tcp_cork"])
    tcp_notsent_lowat: int | None = _read_only(*EXTRA_OPTIONS["tcp_notsent_lowat"])


def untouched_socket_options() -> dict[str, object]:
    """The same options of an accepted socket nobody set anything on, after one request read."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with connect(listener.getsockname()[1]) as client:
            accepted, _ = listener.accept()
            with accepted:
                client.sendall(GET_FAST)
                accepted.recv(65536)
                linger = accepted.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
                onoff, seconds = struct.unpack("ii", linger)
                found: dict[str, object] = {name: accepted.getsockopt(level, option)
                                            for name, (level, option) in EXTRA_OPTIONS.items()}
                found.update(
                    nodelay=bool(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)),
                    quickack=bool(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)),
                    linger={"enabled": bool(onoff), "seconds": seconds},
                    send_buffer_bytes=accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
                    recv_buffer_bytes=accepted.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    return found


def test_a_default_server_changes_nothing_on_its_sockets_but_nodelay():
    with start_server(ReadBackConfig()) as server, connect(server.port) as sock:
        sock.sendall(get("/sockopts"))  # the first request: what the server's accept left
        lab = json.loads(Reader(sock).response().body)
    untouched = untouched_socket_options()
    assert untouched["nodelay"] is False and lab["nodelay"] is True  # the loop's, and the lab's
    differing = {name: (lab[name], value) for name, value in untouched.items()
                 if name != "nodelay" and lab[name] != value}
    assert differing == {}, "lab vs untouched: " + repr(differing)

"""An emulated path in front of a server the lab did not start.

    with Path(delay_ms=20, loss_percent=1).to("127.0.0.1:8000") as front:
        front.url            # http://198.19.0.2:8000: through the path to 127.0.0.1:8000
        front.update("delay=40ms")

``python -m lab path 'delay=20ms' --to 127.0.0.1:8000`` is the same from a shell. The path is
the one ``serve --emulate`` builds (a namespace, TUN devices, the relay), except that its far
end is a device in this namespace and the relay rewrites each packet's addresses
(lab/netpath/nat.py): the connection is the client's and the server's own, end to end, so
the server's own TCP crosses the path. The relay dies with its owner, and the next start
removes what a killed owner left (docs/netpath.md).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from lab.addresses import is_loopback
from lab.errors import ConfigError
from lab.netpath import spec
from lab.netpath.emulator import EmulatedPath, LocalTarget, start_path
from lab.netpath.spec import Path, Target
from lab.netpath.system import require_privilege

OPTION = "to"  # the flag (and argument of Path.to) a target comes from
TARGET_FORM = "HOST:PORT on this machine, e.g. 127.0.0.1:8000"
PROBE_TIMEOUT_SECONDS = 2.0


def parse_target(target: Target) -> tuple[str, int]:
    """(host, port) of a target: ``127.0.0.1:8000``, ``http://localhost:8000/``, ``8000``,
    ``("127.0.0.1", 8000)`` or a running server or peer; a mistake is a ConfigError naming
    ``to``."""
    if isinstance(target, tuple):
        host, port = target
    elif isinstance(target, int):
        host, port = "127.0.0.1", target
    elif isinstance(target, str):
        host, port = _parse_text(target)
    else:
        host, port = str(getattr(target, "host", "127.0.0.1")), int(target.port)
    if not 0 < port < 65_536:
        raise ConfigError(OPTION, f"port {port} is out of range (1 to 65535)")
    if not is_loopback(host):
        # the relay delivers to this namespace's loopback; a remote server
        # has a network of its own in front of it already
        raise ConfigError(OPTION, f"{host} is not a loopback address (127.0.0.0/8 or ::1): "
                          "the path goes in front of a server on this machine")
    return host, port


def _parse_text(text: str) -> tuple[str, int]:
    stripped = text.strip()
    if stripped.isdigit():
        return "127.0.0.1", _port(stripped, text)
    parts = urlsplit(stripped if "//" in stripped else "//" + stripped)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ConfigError(OPTION, f"{text!r} is not {TARGET_FORM}")
    return parts.hostname, port


def _port(word: str, text: str) -> int:
    if len(word) > 5:  # int() of a long digit string is slow and the port is wrong anyway
        raise ConfigError(OPTION, f"{text!r} is not {TARGET_FORM}")
    return int(word)


def check_listening(host: str, port: int) -> None:
    """A ConfigError naming ``to`` unless something accepts connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(OPTION, f"nothing is listening on {_joined(host, port)} "
                          f"({reason.lower()}); start the server first") from None


def _joined(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ipv4_loopback(host: str, port: int) -> str:
    """The IPv4 loopback address ``host`` names: the path carries IPv4 (a ConfigError naming
    ``to`` for a name or address that has none)."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        infos = []
    for info in infos:
        address = str(info[4][0])
        if ipaddress.IPv4Address(address).is_loopback:
            return address
    raise ConfigError(OPTION, f"{_joined(host, port)}: the emulated path carries IPv4; give the "
                      "server's 127.0.0.0/8 address (it must listen there, or on 0.0.0.0)")


class PathInFront:
    """A running path in front of a server on this machine, reached at :attr:`url`."""

    def __init__(self, path: EmulatedPath) -> None:
        assert path.target is not None
        self.path = path
        self.target = (path.target.address, path.target.target_port)
        self.host = path.server_address
        self.port = path.target.port

    @property
    def address(self) -> str:
        """``198.19.0.2:8000``: where a client connects to reach the target through the path."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def spec(self) -> Path:
        return self.path.spec

    @property
    def running(self) -> bool:
        return self.path.running

    def update(self, spec: Path | str) -> Path:
        """Change the path in place (see :meth:`EmulatedPath.update`)."""
        return self.path.update(spec)

    def stats(self) -> dict[str, Any]:
        return self.path.stats()

    def describe(self) -> str:
        return self.path.describe()

    def stop(self) -> None:
        """Stop the relay (the devices go with it) and remove the namespace. Safe to repeat."""
        self.path.stop()
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)

    def __enter__(self) -> PathInFront:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PathInFront {self.spec} {self.url} -> {_joined(*self.target)} {state}>"


def start_path_to(spec: Path | str | None, target: Target, *, port: int | None = None) -> PathInFront:
    """Put a path in front of ``target`` (a server on this machine) and return once a client
    can reach it through the path, at the target's port unless ``port`` says otherwise."""
    path_spec = Path.coerce(spec) or Path()
    host, target_port = parse_target(target)
    if port is not None and not 0 < port < 65_536:
        raise ConfigError("port", f"{port} is out of range (1 to 65535)")
    address = ipv4_loopback(host, target_port)
    require_privilege()  # before the probe: without it, nothing else matters
    check_listening(address, target_port)
    local = LocalTarget(address=address, target_port=target_port,
                        port=port if port is not None else target_port)
    front = PathInFront(start_path(path_spec, target=local))
    atexit.register(front.stop)  # an orderly interpreter exit removes it too
    return front


def _start_for_spec(path: Path, target: Target, port: int | None) -> PathInFront:
    return start_path_to(path, target, port=port)


spec._start_in_front = _start_for_spec  # what Path.to calls (see lab/netpath/spec.py)

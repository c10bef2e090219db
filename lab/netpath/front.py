"""An emulated path in front of a server the lab did not start.

    with Path(delay_ms=20, loss_percent=1).to("127.0.0.1:8000") as front:
        front.url            # http://198.19.0.2:8000: through the path to 127.0.0.1:8000
        front.path.update("delay=40ms")

``python -m lab path 'delay=20ms' --to 127.0.0.1:8000`` is the same from a shell. The path is
the one ``serve --emulate`` builds (namespace, TUN devices, relay); a forwarder process
(lab/netpath/forwarder.py) listens on the path's server address inside its namespace and joins
each connection to the target. Both helper processes die with their owner, and the next start
removes what a killed owner left (docs/netpath.md).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import select
import socket
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

from lab.addresses import is_loopback
from lab.errors import ConfigError, PathError
from lab.netpath import spec
from lab.netpath.emulator import READY_TIMEOUT_SECONDS, STOP_TIMEOUT_SECONDS, EmulatedPath, start_path
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
        # the forwarder reaches the target over this namespace's loopback; a remote server
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


class PathInFront:
    """A running path in front of a server on this machine, reached at :attr:`url`."""

    def __init__(self, path: EmulatedPath, target: tuple[str, int], port: int) -> None:
        self.path = path
        self.target = target
        self.host = path.server_address
        self.port = port
        self._forwarder: subprocess.Popen[str] | None = None

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
    def forwarder_pid(self) -> int | None:
        return self._forwarder.pid if self._forwarder is not None else None

    @property
    def running(self) -> bool:
        forwarder = self._forwarder
        return forwarder is not None and forwarder.poll() is None and self.path.running

    def update(self, spec: Path | str) -> Path:
        """Change the path in place (see :meth:`EmulatedPath.update`)."""
        return self.path.update(spec)

    def stats(self) -> dict[str, Any]:
        return self.path.stats()

    def describe(self) -> str:
        return (f"{self.path.describe()}; forwarder pid {self.forwarder_pid} "
                f"-> {_joined(*self.target)}")

    def _start_forwarder(self) -> None:
        forwarder = subprocess.Popen(
            [sys.executable, "-m", "lab.netpath.forwarder", "--namespace", self.path.namespace,
             "--listen", self.address, "--to", _joined(*self.target)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._forwarder = forwarder
        assert forwarder.stdout is not None
        ready, _, _ = select.select([forwarder.stdout], [], [], READY_TIMEOUT_SECONDS)
        line = forwarder.stdout.readline() if ready else ""
        answer: dict[str, Any] = json.loads(line) if line.strip() else {}
        if not answer.get("ready"):
            why = answer.get("error") or f"no answer (exit code {forwarder.poll()})"
            raise PathError(f"the path's forwarder could not start: {why}")

    def stop(self) -> None:
        """Stop the forwarder, then the path (relay, devices, namespace). Safe to repeat."""
        forwarder, self._forwarder = self._forwarder, None
        if forwarder is not None:
            if forwarder.poll() is None:
                forwarder.terminate()
                try:
                    forwarder.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    forwarder.kill()
                    forwarder.wait()
            for stream in (forwarder.stdin, forwarder.stdout):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
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
    require_privilege()  # before the probe: without it, nothing else matters
    check_listening(host, target_port)
    path = start_path(path_spec)
    front = PathInFront(path, (host, target_port), port if port is not None else target_port)
    try:
        front._start_forwarder()
    except BaseException:
        front.stop()
        raise
    atexit.register(front.stop)  # an orderly interpreter exit removes it too
    return front



def _start_for_spec(path: Path, target: Target, port: int | None) -> PathInFront:
    return start_path_to(path, target, port=port)


spec._start_in_front = _start_for_spec  # what Path.to calls (see lab/netpath/spec.py)

"""An emulated path, built and owned: namespace, devices, addresses and the relay process.

    path = start_path(Path(delay_ms=20))
    path.server_address        # 198.19.0.2: listen here from inside path.namespace
    path.stop()                # everything made is removed

``start_server(path=...)`` and ``serve --emulate`` use this; the server's listening socket is
made by a thread (or process) that has entered :attr:`EmulatedPath.namespace`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from lab.errors import PathError
from lab.netpath import system
from lab.netpath.spec import Path
from lab.options import as_dict

READY_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class LocalTarget:
    """A server on this namespace's loopback that a path goes in front of (lab/netpath/nat.py),
    reached through the path at the path's server address and ``port``."""

    address: str  # IPv4, in 127.0.0.0/8
    target_port: int
    port: int


class EmulatedPath:
    """A running path between this namespace (the client's) and a namespace of its own, or,
    with a ``target``, a server on this namespace's loopback."""

    def __init__(self, spec: Path, slot: int, target: LocalTarget | None = None) -> None:
        self.spec = spec
        self.slot = slot
        self.target = target
        self.namespace = system.namespace_name(slot)
        self.client_device = system.client_device(slot)
        self.server_device = system.server_device(slot) if target is None else system.target_device(slot)
        self.client_address, self.server_address = system.slot_addresses(slot)
        self._relay: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()  # one question to the relay at a time

    # --- life -------------------------------------------------------------------------------

    def _build(self) -> None:
        system.add_namespace(self.namespace)
        try:
            self._relay = subprocess.Popen(
                [sys.executable, "-m", "lab.netpath.relay", "--namespace", self.namespace,
                 "--client-device", self.client_device, *self._far_end(),
                 "--path", json.dumps(as_dict(self.spec))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            answer = self._read_line(READY_TIMEOUT_SECONDS)
            if "error" in answer:
                raise PathError(f"the path's relay could not start: {answer['error']}")
            system.configure_device(self.client_device, self.client_address, self.server_address)
            if self.target is None:
                system.configure_device(self.server_device, self.server_address,
                                        self.client_address, namespace=self.namespace)
            else:
                system.configure_target_device(self.server_device, system.back_address(self.slot))
            system.label_device(self.client_device, str(self.spec))
        except BaseException:
            self.stop()
            raise

    def _far_end(self) -> list[str]:
        """The relay's arguments for the server's side: a device in the namespace, or one here
        with the addresses it translates (lab/netpath/nat.py)."""
        if self.target is None:
            return ["--server-device", self.server_device]
        addresses = {"client": self.client_address, "server": self.server_address,
                     "back": system.back_address(self.slot), "target": self.target.address,
                     "target_port": self.target.target_port, "port": self.target.port}
        return ["--target-device", self.server_device, "--translate", json.dumps(addresses)]

    @property
    def running(self) -> bool:
        return self._relay is not None and self._relay.poll() is None

    @property
    def relay_pid(self) -> int | None:
        return self._relay.pid if self._relay is not None else None

    def stop(self) -> None:
        """Stop the relay (its devices go with it) and remove the namespace. Safe to repeat."""
        relay, self._relay = self._relay, None
        if relay is not None:
            if relay.poll() is None:
                relay.terminate()
                try:
                    relay.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    relay.kill()
                    relay.wait()
            for stream in (relay.stdin, relay.stdout):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
        system.kill_processes_in(self.namespace)  # a server process left in it, if any
        system.delete_namespace(self.namespace)
        system.wait_until_gone(self.client_device)
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)

    # --- talking to the relay ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Packets and bytes per direction, lost and queue-dropped, as the relay counted them."""
        return self._ask({})

    def update(self, spec: Path | str) -> Path:
        """Change the path in place: packets in flight keep the delay they were given."""
        new = Path.coerce(spec)
        assert new is not None
        self._ask({"path": as_dict(new)})
        self.spec = new
        system.label_device(self.client_device, str(new))  # what a generator's record reads
        return new

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            relay = self._require_running()
            assert relay.stdin is not None
            relay.stdin.write(json.dumps(message) + "\n")
            relay.stdin.flush()
            return self._read_line(STOP_TIMEOUT_SECONDS)

    def _read_line(self, timeout: float) -> dict[str, Any]:
        relay = self._require_running()
        assert relay.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(relay.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0]:
            raise PathError(f"the path's relay (pid {relay.pid}) did not answer "
                            f"(exit code {relay.poll()})")
        answer: dict[str, Any] = json.loads(line[0])
        return answer

    def _require_running(self) -> subprocess.Popen[str]:
        if self._relay is None:
            raise PathError("the emulated path is stopped")
        return self._relay

    # --- the server's namespace --------------------------------------------------------------

    def enter(self) -> None:
        """Move the calling thread into the server's namespace (for a listener made there)."""
        system.enter_namespace(self.namespace)

    def netem_available(self) -> bool:
        """Whether this kernel has netem (it need not: the relay is the path either way)."""
        return system.netem_available(self.namespace)

    def read_sysctl(self, name: str) -> str:
        return system.read_sysctl(self.namespace, name)

    def write_sysctl(self, name: str, value: str | int) -> None:
        system.write_sysctl(self.namespace, name, str(value))

    def describe(self) -> str:
        far = self.server_address
        if self.target is not None:
            far = (f"{self.server_address}:{self.target.port} = {self.target.address}:"
                   f"{self.target.target_port} here")
        return (f"emulated path {self.spec} (RTT {self.spec.rtt_ms:g} ms): "
                f"{self.client_address} -> {far} in namespace {self.namespace}, "
                f"relay pid {self.relay_pid}")

    def __enter__(self) -> EmulatedPath:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmulatedPath {self.spec} {self.server_address} {state}>"


def start_path(spec: Path | str | None = None, *, target: LocalTarget | None = None,
               **changes: Any) -> EmulatedPath:
    """Build a path (``Path`` or its text form, plus single changes) and return once it carries
    packets; with ``target``, in front of that server on this namespace's loopback. Stale
    paths of lab processes that died are removed first."""
    path = Path.coerce(spec) or Path()
    if changes:
        path = path.replace(**changes)
    system.require_privilege()
    system.remove_stale()
    with system.setup_lock():
        emulated = EmulatedPath(path, system.free_slot(), target)
        emulated._build()
    atexit.register(emulated.stop)  # an orderly interpreter exit removes it too
    return emulated

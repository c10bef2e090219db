"""The kernel side of an emulated path: privilege, namespaces, TUN devices, addresses, clean-up.

Names carry the owner's pid (``labnp-<pid>-<slot>``) so that a namespace left by a run that
was killed (SIGKILL, a crashed kernel) is recognised at the next start -- its owner no longer
exists -- and removed with whatever still runs in it. Addresses come from 198.19.0.0/16, in
the range RFC 2544 sets aside for benchmark tests (198.18.0.0/15), one /24 per path ("slot"):
198.19.<slot>.1 on the client's side, 198.19.<slot>.2 on the server's.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path as FilePath

from lab.addresses import EMULATED_DEVICE_PREFIX, EMULATED_NETWORK
from lab.errors import PathError

NAMESPACE_PREFIX = "labnp-"
NETNS_DIR = FilePath("/run/netns")
TUN_DEVICE = FilePath("/dev/net/tun")
LOCK_FILE = FilePath("/run/lab-netpath.lock")
SLOTS = 256
CAP_NET_ADMIN = 12
CLONE_NEWNET = 0x40000000
IP_TIMEOUT_SECONDS = 10.0

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000  # packets without the 4-byte protocol header: plain IP


def missing_privilege() -> str | None:
    """None when this process can build a path, else what is missing, in a few words."""
    if not _has_net_admin():  # root has it unless it was dropped (a container, setpriv)
        return f"needs root or CAP_NET_ADMIN (running as uid {os.geteuid()} without it)"
    if not TUN_DEVICE.exists():
        return f"needs {TUN_DEVICE} (the tun kernel module)"
    if shutil.which("ip") is None:
        return "needs the ip command (Debian's iproute2)"
    return None


def _has_net_admin() -> bool:
    with contextlib.suppress(OSError):
        for line in FilePath("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return False


def require_privilege() -> None:
    reason = missing_privilege()
    if reason is not None:
        raise PathError(f"cannot build an emulated network path: {reason}")


# --- names and addresses ----------------------------------------------------------------------

def namespace_name(slot: int, owner: int | None = None) -> str:
    return f"{NAMESPACE_PREFIX}{owner if owner is not None else os.getpid()}-{slot}"


def client_device(slot: int) -> str:
    return f"{EMULATED_DEVICE_PREFIX}{slot}c"  # in the client's (root) namespace


def server_device(slot: int) -> str:
    return f"{EMULATED_DEVICE_PREFIX}{slot}s"  # in the server's namespace


def target_device(slot: int) -> str:
    """In the client's namespace too: where a path in front of a local server delivers."""
    return f"{EMULATED_DEVICE_PREFIX}{slot}t"


def slot_addresses(slot: int) -> tuple[str, str]:
    """(client side, server side) of a slot."""
    base = int(EMULATED_NETWORK.network_address) + (slot << 8)
    return str(ipaddress.IPv4Address(base + 1)), str(ipaddress.IPv4Address(base + 2))


def back_address(slot: int) -> str:
    """The address a server the lab did not start sees the client at (lab/netpath/nat.py)."""
    return str(ipaddress.IPv4Address(int(EMULATED_NETWORK.network_address) + (slot << 8) + 3))


def lab_namespaces() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NAMESPACE_PREFIX))


def lab_devices() -> list[str]:
    """The lab's TUN devices in this namespace."""
    return sorted(p.name for p in FilePath("/sys/class/net").iterdir()
                  if p.name.startswith(EMULATED_DEVICE_PREFIX))


def free_slot() -> int:
    used = {int(name.removeprefix(EMULATED_DEVICE_PREFIX)[:-1]) for name in lab_devices()
            if name.removeprefix(EMULATED_DEVICE_PREFIX)[:-1].isdigit()}
    used |= {int(name.rsplit("-", 1)[1]) for name in lab_namespaces()
             if name.rsplit("-", 1)[1].isdigit()}
    for slot in range(SLOTS):
        if slot not in used:
            return slot
    raise PathError(f"all {SLOTS} emulated paths are in use; stop some first")


@contextlib.contextmanager
def setup_lock() -> Iterator[None]:
    """Held while a slot is chosen and claimed, so two labs starting at once pick two slots."""
    with open(LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- commands -----------------------------------------------------------------------------

def ip(*arguments: str, namespace: str | None = None) -> None:
    command = ["ip", *(["-n", namespace] if namespace else []), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=IP_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise PathError(f"{' '.join(command)} failed: {done.stderr.strip() or done.returncode}")


def label_device(device: str, text: str) -> None:
    """Write ``text`` into the device's alias (IFLA_IFALIAS, at most 255 bytes).

    The path's settings live on its client device: any process can read them there
    (``lab.addresses.path_in_front_of``: a record of a run that only knows the address it sent
    to), and they go when the device goes.
    """
    ip("link", "set", "dev", device, "alias", text)


def add_namespace(name: str) -> None:
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", namespace=name)


def delete_namespace(name: str) -> None:
    """Remove a namespace's name; the kernel frees it once nothing (no relay) holds it."""
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=IP_TIMEOUT_SECONDS)


def configure_device(device: str, local: str, peer: str, namespace: str | None = None) -> None:
    """A point-to-point address pair: the kernel adds the one route, to the peer, itself."""
    ip("addr", "add", local, "peer", f"{peer}/32", "dev", device, namespace=namespace)
    ip("link", "set", device, "up", namespace=namespace)


def configure_target_device(device: str, back: str) -> None:
    """The device through which a local server is reached: it carries packets to 127.0.0.1,
    which the kernel takes from a device only with ``route_localnet`` (set on this device
    alone), and the route back to ``back``, so the server's answers return to the relay."""
    for setting, value in (("route_localnet", "1"), ("rp_filter", "0")):
        (FilePath("/proc/sys/net/ipv4/conf") / device / setting).write_text(value)
    ip("link", "set", device, "up")
    ip("route", "add", f"{back}/32", "dev", device)


def open_tun(name: str) -> int:
    """A non-blocking TUN device ``name`` in the calling thread's namespace. It exists while the
    descriptor is open: when the relay exits, for whatever reason, the device goes with it."""
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def enter_namespace(name: str) -> None:
    """Move the calling thread into namespace ``name``: sockets it makes from now on live there.

    A network namespace belongs to a thread, not a process, so a server thread may enter one
    while the kernel's other threads stay put (Python 3.11 has no os.setns: libc's).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise PathError(f"cannot enter network namespace {name}: {os.strerror(code)}")
    finally:
        os.close(fd)


def read_sysctl(namespace: str, name: str) -> str:
    """A sysctl as the namespace sees it (``net.ipv4.tcp_slow_start_after_idle``)."""
    return _in_namespace(namespace, ["cat", _sysctl_file(name)]).strip()


def write_sysctl(namespace: str, name: str, value: str) -> None:
    _in_namespace(namespace, ["sh", "-c", f"echo {value} > {_sysctl_file(name)}"])


def _sysctl_file(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def _in_namespace(namespace: str, command: list[str]) -> str:
    done = subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True,
                          text=True, timeout=IP_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise PathError(f"{' '.join(command)} in {namespace} failed: {done.stderr.strip()}")
    return done.stdout


def netem_available(namespace: str) -> bool:
    """Whether this kernel has the netem qdisc, tried on the namespace's own loopback (so the
    machine's devices are never touched). Where it exists, ``tc ... netem`` could stand in for
    the relay; the lab still uses the relay, so the two can be compared (docs/netpath.md)."""
    if shutil.which("tc") is None:
        return False
    added = subprocess.run(["ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", "lo",
                            "root", "netem", "delay", "0ms"], capture_output=True,
                           timeout=IP_TIMEOUT_SECONDS)
    if added.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", "lo", "root"],
                   capture_output=True, timeout=IP_TIMEOUT_SECONDS)
    return True


# --- stale state --------------------------------------------------------------------------

def owner_of(namespace: str) -> int | None:
    middle = namespace.removeprefix(NAMESPACE_PREFIX).split("-")[0]
    return int(middle) if middle.isdigit() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Remove the namespaces (and their relays) of lab processes that no longer exist."""
    removed = []
    for name in lab_namespaces():
        owner = owner_of(name)
        if owner is not None and alive(owner):
            continue
        kill_processes_in(name)
        delete_namespace(name)
        removed.append(name)
    return removed


def kill_processes_in(namespace: str) -> None:
    """SIGKILL whatever still runs in the namespace (a relay whose parent was killed)."""
    done = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                          timeout=IP_TIMEOUT_SECONDS)
    for word in done.stdout.split():
        if word.isdigit() and int(word) != os.getpid():  # `serve --emulate` itself lives there
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(word), signal.SIGKILL)


def wait_until_gone(device: str, timeout: float = 2.0) -> None:
    """Devices vanish a moment after their descriptor closes; wait so a caller sees them gone."""
    deadline = time.monotonic() + timeout
    while FilePath("/sys/class/net", device).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


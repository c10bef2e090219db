"""The one loopback check: the lab sends traffic only to this machine unless told otherwise.

A host counts as loopback when every address it resolves to is in 127.0.0.0/8 or is ::1, so
``localhost`` passes and a name that points elsewhere does not. The server end of one of the
lab's own emulated network paths (lab/netpath) counts too, but only while that path is up: an
address in the lab's range (198.19.0.0/16) to which this namespace routes through a device the
lab made. Anything else in that range is as remote as any other address. The path's settings
are written on that device (its alias), so a record can say which path a run went through.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

from lab.errors import ConfigError

OPT_IN = "pass allow_remote=True for a target you own"

# The lab's emulated paths (lab/netpath): their addresses and the names of their devices.
EMULATED_NETWORK = ipaddress.IPv4Network("198.19.0.0/16")
EMULATED_DEVICE_PREFIX = "labp"
_ROUTES = "/proc/net/route"
_NET_DEVICES = Path("/sys/class/net")
_RTF_UP, _RTF_HOST = 0x1, 0x4


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names (resolving it if it is a name) is loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def is_emulated_path(host: str) -> bool:
    """True when ``host`` is the far end of a lab-made emulated path that is up right now."""
    return emulated_path_device(host) is not None


def emulated_path_device(host: str) -> str | None:
    """The lab device through which ``host``, the far end of an emulated path that is up right
    now, is reached; None for any other host.

    Read from the kernel's routing table (/proc/net/route): a path is a host route to its
    server's address through a lab device, present only while that device is up.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not isinstance(address, ipaddress.IPv4Address) or address not in EMULATED_NETWORK:
        return None
    try:
        with open(_ROUTES) as routes:
            rows = [line.split() for line in routes.readlines()[1:]]
    except OSError:
        return None
    # /proc/net/route prints each address's four bytes as one native-order hex number
    wanted = f"{int.from_bytes(address.packed, sys.byteorder):08X}"
    for row in rows:
        if (len(row) > 7 and row[0].startswith(EMULATED_DEVICE_PREFIX) and row[1] == wanted
                and int(row[3], 16) & (_RTF_UP | _RTF_HOST) == _RTF_UP | _RTF_HOST
                and row[7] == "FFFFFFFF"):
            return row[0]
    return None


def path_in_front_of(host: str) -> str | None:
    """The settings of the emulated path that leads to ``host`` (``delay=20ms ...``), as the
    path wrote them into its device's alias; None when ``host`` is not the far end of a lab
    path that is up."""
    device = emulated_path_device(host)
    if device is None:
        return None
    try:
        text = (_NET_DEVICES / device / "ifalias").read_text().strip()
    except OSError:
        return None
    return text or None


def require_loopback(host: str, *, allow_remote: bool = False, option: str = "url",
                     opt_in: str | None = OPT_IN) -> None:
    """Raise a :class:`ConfigError` naming ``option`` unless ``host`` is loopback or the caller
    opted in; ``opt_in`` tells the user how to opt in (None where they cannot)."""
    if allow_remote or is_loopback(host) or is_emulated_path(host):
        return
    raise RemoteTargetRefused(option, host, opt_in)


class RemoteTargetRefused(ConfigError):
    """A target outside this machine, refused; the message says how to opt in, in the words of
    the caller's interface (``allow_remote=True`` in Python; the CLI names its flag)."""

    def __init__(self, option: str, host: str, opt_in: str | None) -> None:
        how = f"; {opt_in}" if opt_in else ""
        super().__init__(option, f"{host} is not a loopback address (127.0.0.0/8 or ::1): the lab "
                         f"only sends traffic to this machine{how}")
        self.host = host
        self.opt_in = opt_in

    def opting_in(self, opt_in: str) -> RemoteTargetRefused:
        """The same refusal, saying ``opt_in`` (where the caller could opt in at all)."""
        return self if self.opt_in is None else RemoteTargetRefused(self.option, self.host, opt_in)

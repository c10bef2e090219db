"""The one loopback check: the lab sends traffic only to this machine unless told otherwise.

A host counts as loopback when every address it resolves to is in 127.0.0.0/8 or is ::1, so
``localhost`` passes and a name that points elsewhere does not.
"""

from __future__ import annotations

import ipaddress
import socket

from lab.errors import ConfigError

OPT_IN = "pass allow_remote=True (--allow-remote) for a target you own"


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


def require_loopback(host: str, *, allow_remote: bool = False, option: str = "url",
                     opt_in: str | None = OPT_IN) -> None:
    """Raise a :class:`ConfigError` naming ``option`` unless ``host`` is loopback or the caller
    opted in; ``opt_in`` tells the user how to opt in (None where they cannot)."""
    if allow_remote or is_loopback(host):
        return
    how = f"; {opt_in}" if opt_in else ""
    raise ConfigError(option, f"{host} is not a loopback address (127.0.0.0/8 or ::1): the lab "
                      f"only sends traffic to this machine{how}")

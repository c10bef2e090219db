"""The lab's errors: one family, so a caller can catch ``LabError`` and a user sees one line.

Every error a user can cause or meet in normal use is a :class:`LabError`. Each also derives
from the built-in error it refines (``ValueError`` for a bad setting, ``LookupError`` for a
record that is not there), so code written against the built-ins keeps working.
"""

from __future__ import annotations


class LabError(Exception):
    """Base of every error the lab raises on purpose."""


class ConfigError(LabError, ValueError):
    """A setting is wrong; the message names the setting (``option``) and what is allowed."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message  # without the option's name, for a caller that names it its way


class ServerError(LabError, RuntimeError):
    """The server could not start, or stopped answering its handle."""


class PathError(LabError, RuntimeError):
    """An emulated network path cannot be built here (privilege, devices) or stopped working."""


class LoadError(LabError, RuntimeError):
    """The load generator could not run (a worker or the calibration failed)."""


class RecordNotFound(LabError, LookupError):
    """No saved run answers to that name, id or prefix."""


class CorruptRecord(LabError, ValueError):
    """A record in the data folder cannot be read back."""


class PeerError(LabError, RuntimeError):
    """A peer server started but died or never answered."""


class PeerUnavailable(PeerError):
    """A peer cannot run on this machine (binary missing, npm failing)."""


class WrkError(LabError, RuntimeError):
    """wrk failed, or printed something that cannot be read."""


class WrkNotFound(WrkError):
    """wrk is not installed."""


class PinningError(LabError, RuntimeError):
    """The cores asked for cannot be honoured here (no taskset, or a core we may not use)."""

"""Latency Lab: a tunable HTTP/1.1 server, a load generator whose numbers can be trusted,
and the notebook tools to see what each knob does to latency."""

from typing import Any

from lab.config import ServerConfig
from lab.options import ConfigError

__version__ = "0.1.0"

__all__ = ["ConfigError", "ServerConfig", "__version__", "panel"]


def panel(*args: Any, **options: Any) -> Any:
    """A control panel for a lab server (see lab/control_panel.py); display it in a cell."""
    # Imported here: the panel pulls in ipywidgets and matplotlib, which `python -m lab serve`
    # and the generator's worker processes do not need.
    from lab.control_panel import LabPanel
    return LabPanel(*args, **options)

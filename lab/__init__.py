"""Latency Lab: a tunable HTTP/1.1 server, a load generator whose numbers can be trusted,
and the notebook tools to see what each knob does to latency."""

from lab.config import ServerConfig
from lab.options import ConfigError

__version__ = "0.1.0"

__all__ = ["ConfigError", "ServerConfig", "__version__"]

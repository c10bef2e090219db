"""Latency Lab: a tunable HTTP/1.1 server, a load generator whose numbers can be trusted,
and the notebook tools to see what each knob does to latency.

    import lab

    with lab.start_server(nodelay=False, split_writes=True) as server:
        result = lab.run_load(lab.LoadSpec(url=server.url + "/fast", duration_seconds=2))
    record = lab.record_from_result(result, name="nagle")
    figure = lab.plots.percentile_spectrum([record])

Routes of your own: ``router = lab.Router()``, ``@router.get("/hello")`` on a function of a
``lab.Request`` that returns a ``lab.Response``; ``lab.start_server(router=router)``. A run's raw
samples: ``lab.latency_ns(result.samples)``, ``lab.ErrorKind``, ``lab.MISSING``.

The names below are the front door; each part's internals live in a subpackage (``lab.http``
the server's, ``lab.engine`` the generator's, ``lab.measure``, ``lab.records``,
``lab.notebook``, ``lab.peers``, ``lab.experiments``, ``lab.cli``, ``lab.netpath`` the emulated
network path). Heavy names (numpy, pandas, matplotlib,
ipywidgets behind them) load on first use, so ``python -m lab serve`` starts without them.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

from lab.errors import ConfigError, LabError
from lab.http.config import ServerConfig

if TYPE_CHECKING:
    from lab.engine.result import LoadResult
    from lab.engine.spec import LoadSpec
    from lab.experiments.report import report
    from lab.experiments.sweeps import sweep
    from lab.http.messages import Request, Response, StreamingResponse
    from lab.http.routing import Router
    from lab.loadgen import Run, run_load, start_load
    from lab.measure.samples import MISSING, SAMPLE_DTYPE, ErrorKind, latency_ns, start_ns, ttfb_ns
    from lab.netpath import EmulatedPath, Path
    from lab.notebook.panel import LabPanel
    from lab.records import plots
    from lab.records.experiment import record_from_result
    from lab.records.record import Record
    from lab.records.store import RecordStore
    from lab.server import ServerHandle, start_server

try:
    __version__ = metadata.version("latency-lab")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "MISSING",
    "SAMPLE_DTYPE",
    "ConfigError",
    "EmulatedPath",
    "ErrorKind",
    "LabError",
    "LoadResult",
    "LoadSpec",
    "Path",
    "Record",
    "RecordStore",
    "Request",
    "Response",
    "Router",
    "Run",
    "ServerConfig",
    "ServerHandle",
    "StreamingResponse",
    "__version__",
    "latency_ns",
    "panel",
    "plots",
    "record_from_result",
    "report",
    "run_load",
    "start_load",
    "start_ns",
    "start_server",
    "sweep",
    "ttfb_ns",
]

# name -> module that defines it; imported on first access (PEP 562).
_LAZY: dict[str, str] = {
    "LoadResult": "lab.engine.result",
    "LoadSpec": "lab.engine.spec",
    "Path": "lab.netpath",
    "EmulatedPath": "lab.netpath",
    "Record": "lab.records.record",
    "RecordStore": "lab.records.store",
    "ServerHandle": "lab.server",
    "run_load": "lab.loadgen",
    "Run": "lab.loadgen",  # what start_load returns, local or on Dask
    "start_load": "lab.loadgen",
    "start_server": "lab.server",
    "sweep": "lab.experiments.sweeps",
    # one HTML file to share: of runs, a sweep or a capacity search (lab/records/html_report.py)
    "report": "lab.experiments.report",
    "record_from_result": "lab.records.experiment",
    # what a route is written with (see lab.http.routing): router.get("/x")(handler)
    "Router": "lab.http.routing",
    "Request": "lab.http.messages",
    "Response": "lab.http.messages",
    "StreamingResponse": "lab.http.messages",
    # a run's raw samples (LoadResult.samples): their dtype, the MISSING mark, error kinds, columns
    "MISSING": "lab.measure.samples",
    "SAMPLE_DTYPE": "lab.measure.samples",
    "ErrorKind": "lab.measure.samples",
    "latency_ns": "lab.measure.samples",
    "start_ns": "lab.measure.samples",
    "ttfb_ns": "lab.measure.samples",
}


def __getattr__(name: str) -> Any:
    if name == "plots":
        return importlib.import_module("lab.records.plots")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def panel(*args: Any, **options: Any) -> LabPanel:
    """A control panel for a lab server (see :mod:`lab.notebook.panel`); display it in a cell."""
    from lab.notebook.panel import LabPanel

    return LabPanel(*args, **options)

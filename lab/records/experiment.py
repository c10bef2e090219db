"""Glue between a finished load run and an experiment record.

The load generator knows nothing of records and records know nothing of the generator; this
is the one place that turns a :class:`~lab.engine.result.LoadResult` (plus the server settings it
ran against) into a :class:`~lab.records.record.Record`. The CLI's ``bench --save``, the panel and the
notebooks all call it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import is_dataclass
from typing import Any

import numpy as np

from lab.addresses import path_in_front_of
from lab.engine.result import LoadResult
from lab.measure.hiccup import run_hiccup_record
from lab.options import as_dict
from lab.records.record import Marker, Record
from lab.records.store import RecordStore

GENERATOR_EVENT_LOOP = "uvloop"  # the generator's workers always run on uvloop


def record_from_result(result: LoadResult, *, server_config: Any = None, name: str = "run",
                       notes: str = "", tags: tuple[str, ...] = (),
                       changes: Sequence[tuple[int, str]] = (),
                       server_hiccups: np.ndarray | None = None) -> Record:
    """A record of the measured part of a run (warm-up requests are left out, as in the summary).

    The record keeps the run's measured window and outcome, so its summary -- and ``show
    --json`` -- give exactly the figures the run printed. ``changes``: (perf_counter_ns,
    label) of knobs changed during the run, kept as markers on its timeline.
    ``server_hiccups``: the server's hiccup-meter series (``ServerHandle.hiccups()``), kept
    as the largest hiccup of each 100 ms of the measured window and their distribution; the
    generator's own (``LoadSpec(hiccup_meter=True)``) is kept the same way from the result.
    """
    samples = result.measured_samples()
    # The server's first, then the generator's: each says whose loop it timed (``source``).
    hiccups = [] if server_hiccups is None else [
        run_hiccup_record(server_hiccups, source="server", samples=samples,
                          window_ns=result.outcome.window_ns)]
    generator_hiccups = result.generator_hiccup_record()
    if generator_hiccups is not None:
        hiccups.append(generator_hiccups)
    return Record.create(
        samples=samples, load_spec=result.spec_dict(),
        server_config=_with_network_path(server_config, result.spec.target.host),
        name=name, notes=notes, tags=tags,
        event_loop=GENERATOR_EVENT_LOOP, started_at=dt.datetime.fromisoformat(result.started_at),
        outcome=result.outcome, markers=[Marker.at(at_ns, label, samples) for at_ns, label in changes],
        summary=result.summary,  # the run's own: a run's summary is computed once
        hiccups=hiccups)


def save_result(result: LoadResult, *, server_config: Any = None, name: str = "run",
                store: RecordStore | None = None, **details: Any) -> Record:
    """Make the record of a run and save it in the store (``data/`` by default)."""
    record = record_from_result(result, server_config=server_config, name=name, **details)
    (store or RecordStore()).save(record)
    return record


def _with_network_path(server_config: Any, host: str) -> Any:
    """The server's settings with the emulated path in front of it, when the run went through
    one: a 40 ms round trip changes every figure, so a record must say so whoever made it (a
    panel knows its server's path; ``bench`` learns it from the path's device)."""
    path = path_in_front_of(host)
    if path is None:
        return server_config
    if server_config is None:
        return {"network_path": path}
    settings = dict(as_dict(server_config) if is_dataclass(server_config) else server_config)
    settings.setdefault("network_path", path)
    return settings

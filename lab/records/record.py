"""Experiment records: one run of the lab, kept whole.

A :class:`Record` holds what produced a run (the load specification and the server
configuration, as plain dicts), where it ran (:class:`~lab.records.environment.Environment`), and the
raw per-request samples. The summary and the timeline are derived from the samples, so they
are never out of step with them.

From a finished run, one call makes and saves a record::

    from lab.records.store import save_run
    record = save_run(samples=samples, load_spec=spec, server_config=config, name="nagle-on")

(``spec`` and ``config`` may be the config dataclasses or plain dicts.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from lab.engine.stages import parse_stages
from lab.errors import ConfigError
from lab.measure.hiccup import HiccupRecord
from lab.measure.run import (
    RunOutcome,
    run_document,
    stage_results,
    stages_document,
    stored_late_after_ms,
    summarize_measured,
    threshold_checks,
)
from lab.measure.samples import SAMPLE_DTYPE
from lab.measure.summary import DEFAULT_THRESHOLDS_MS, RunSummary, run_span_ns, threshold_key, timeline
from lab.measure.thresholds import Outcome, verdict
from lab.options import as_dict
from lab.records import schema
from lab.records.environment import Environment, utc_now
from lab.records.schema import RECORD_FORMAT, RECORD_VERSION, Marker

# Marker and the format's name and version are record.json's (lab.records.schema); they stay
# importable from here.
__all__ = ["MAX_NAME_CHARS", "RECORD_FORMAT", "RECORD_VERSION", "Marker", "Record", "check_name",
           "differing_keys", "flat_settings", "frozen_samples", "looks_like_record_id", "new_record_id",
           "plain_settings", "short_key"]

_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
# A name is shown in tables, legends and file names: long enough for a description, short
# enough that a default export path stays a valid file name.
MAX_NAME_CHARS = 200


def check_name(name: str) -> str:
    """The name a record gets (stripped), or a ConfigError naming ``name`` saying what is wrong."""
    stripped = name.strip()
    if not stripped:
        raise ConfigError("name", "must not be empty")
    if len(stripped) > MAX_NAME_CHARS:
        raise ConfigError("name", f"{len(stripped)} characters is too long; at most {MAX_NAME_CHARS}")
    return stripped


def new_record_id(started_at: dt.datetime) -> str:
    """Short and sortable by start time (UTC, to the second), made unique by 16 random bits."""
    return started_at.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def looks_like_record_id(text: str) -> bool:
    return bool(_ID_PATTERN.match(text))


def plain_settings(settings: Any, *, what: str) -> dict[str, Any]:
    """A configuration (dataclass or mapping) as the JSON-friendly dict a record stores.

    Going through JSON here, not only when saving, means a record compares equal to the same
    record loaded back (tuples would otherwise come back as lists).
    """
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        settings = as_dict(settings)
    if not isinstance(settings, Mapping):
        raise TypeError(f"{what}: expected a dict or a config dataclass, got {type(settings).__name__}")
    try:
        plain: dict[str, Any] = json.loads(json.dumps(settings, default=_json_default, allow_nan=False))
        return plain
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what}: cannot be stored as JSON: {error}") from error


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_dict(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def frozen_samples(samples: np.ndarray) -> np.ndarray:
    """A read-only copy in the one sample format: a record's measurements never change."""
    if not isinstance(samples, np.ndarray) or samples.dtype != SAMPLE_DTYPE:
        kind = getattr(samples, "dtype", type(samples).__name__)
        raise TypeError(f"samples: expected a numpy array of lab.measure.samples.SAMPLE_DTYPE, got {kind}")
    copy = np.array(samples, dtype=SAMPLE_DTYPE, copy=True, order="C").reshape(-1)
    copy.flags.writeable = False
    return copy


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Record:
    """One run: its settings, environment and raw samples. Build one with :meth:`create`."""

    id: str
    name: str
    samples: np.ndarray
    load_spec: dict[str, Any]
    server_config: dict[str, Any] | None
    environment: Environment
    notes: str = ""
    tags: tuple[str, ...] = ()
    thresholds_ms: tuple[float, ...] = DEFAULT_THRESHOLDS_MS
    # What happened to the run (its measured window, stops, problems); None for records made
    # from samples alone, whose window is then the samples' own span.
    outcome: RunOutcome | None = None
    # Changes made during the run (a live reconfigure), in time order; older records have none.
    markers: tuple[Marker, ...] = ()
    # How late the server's (and generator's) own loop woke during the run (issue 28's hiccup
    # meter), one entry per loop measured; none when no meter ran.
    hiccups: tuple[HiccupRecord, ...] = ()

    @classmethod
    def create(cls, *, samples: np.ndarray, load_spec: Any, server_config: Any = None,
               name: str = "run", notes: str = "", tags: Sequence[str] = (),
               event_loop: str | None = None, started_at: dt.datetime | None = None,
               environment: Environment | None = None,
               thresholds_ms: Sequence[float] = DEFAULT_THRESHOLDS_MS,
               outcome: RunOutcome | None = None, markers: Sequence[Marker] = (),
               summary: RunSummary | None = None, hiccups: Sequence[HiccupRecord] = ()) -> Record:
        """Make a record of a finished run, capturing the environment it ran in.

        ``event_loop`` names the loop the load generator used; ``started_at`` is when the
        run began (default: now). Pass ``environment`` only to reuse one captured earlier, and
        ``summary`` only when it is the one :func:`~lab.measure.run.summarize_measured` gave
        for these samples, settings, outcome and thresholds (a run's own): it is then not
        computed a second time.
        """
        if environment is None:
            environment = Environment.capture(event_loop=event_loop, started_at=started_at or utc_now())
        record = cls(
            id=new_record_id(environment.started),
            name=check_name(name),
            samples=frozen_samples(samples),
            load_spec=plain_settings(load_spec, what="load_spec"),
            server_config=None if server_config is None else plain_settings(
                server_config, what="server_config"),
            environment=environment,
            notes=notes,
            tags=tuple(str(tag) for tag in tags),
            thresholds_ms=tuple(float(t) for t in thresholds_ms),
            outcome=outcome, markers=tuple(sorted(markers, key=lambda marker: marker.t_s)),
            hiccups=tuple(hiccups))
        if summary is not None:
            if summary.requests != record.samples.size or \
                    set(summary.share_under) != {threshold_key(t) for t in record.thresholds_ms}:
                raise ValueError("summary: not the summary of these samples and thresholds")
            # The cached property's slot: the summary the run computed is the record's.
            record.__dict__["summary"] = summary
        return record

    # --- derived figures --------------------------------------------------------------------

    @cached_property
    def summary(self) -> RunSummary:
        """The run's figures, computed as the load generator computed them for the run."""
        window = None if self.outcome is None else self.outcome.window_ns
        return summarize_measured(self.samples, self.load_spec, window, thresholds_ms=self.thresholds_ms)

    def run_outcome(self) -> RunOutcome:
        """What happened to the run; for a record made from samples alone, their span."""
        return self.outcome or RunOutcome(window_ns=run_span_ns(self.samples))

    def verdict(self) -> tuple[Outcome, str | None]:
        """Passed, a threshold failed, no request succeeded or the run was incomplete -- and why:
        the run's own verdict
        (``LoadResult.verdict``, the exit code of ``bench``), from the record's summary."""
        outcome = self.run_outcome()
        return verdict(self.summary, threshold_checks(self.load_spec, self.summary),
                       outcome.problems, stopped=outcome.stopped_early)

    def report(self, path: str | PurePath | None = None, *, others: Sequence[Record] = (),
               title: str | None = None) -> PurePath:
        """This run -- and ``others`` compared with it, as ratios against this one -- as one
        self-contained HTML file to share (lab/records/html_report.py; ``python -m lab report``
        and ``lab.report`` write the same file). ``path`` defaults to ``<id>-<name>.html`` in
        the current folder, as an export's file is named. Returns the path written."""
        # The one place storage reaches presentation: only when called, never when loaded, so
        # saving and listing runs still load no plotting (tests/test_architecture.py).
        from lab.records import html_report

        if path is None:
            slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.name)[:60].strip("-.") or "run"
            path = f"{self.id}-{slug}.html"
        return html_report.write_report([self, *others], str(path), title=title)

    def to_json_dict(self) -> dict[str, Any]:
        """The object ``bench --json`` printed for this run (``show RUN --json``)."""
        outcome = self.run_outcome()
        document = run_document(self.summary, self.load_spec, started_at=self.environment.started_at,
                                outcome=outcome)
        stages = self.load_spec.get("stages") or ()
        if stages and self.outcome is not None:
            # A staged run has no warm-up: its stages begin where its measured window does.
            # (A record made from samples alone has no such start: its stages are not shown.)
            document["stages"] = stages_document(stage_results(
                self.samples, parse_stages(tuple(stages)), outcome.window_ns[0],
                stored_late_after_ms(self.load_spec)))
        if self.hiccups:  # as bench --json gives the generator's, and the JSON export every loop's
            document["hiccups"] = [hiccups.as_dict() for hiccups in self.hiccups]
        return document

    def timeline(self, interval_s: float | None = None) -> pd.DataFrame:
        """Per-interval rates and latency percentiles; see :func:`lab.measure.summary.timeline`."""
        return timeline(self.samples, interval_s)

    @property
    def started(self) -> dt.datetime:
        return self.environment.started

    def settings(self) -> dict[str, Any]:
        """Load and server settings in one flat dict, keys prefixed ``load.`` / ``server.``."""
        return flat_settings(self.load_spec, self.server_config)

    def replace(self, **changes: Any) -> Record:
        """A copy with descriptive fields changed (name, notes, tags); samples stay as measured."""
        allowed = {"name", "notes", "tags"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise ConfigError(unknown[0], f"cannot be changed on a record; allowed: {sorted(allowed)}")
        if "tags" in changes:
            changes["tags"] = tuple(str(tag) for tag in changes["tags"])
        if "name" in changes:
            changes["name"] = check_name(changes["name"])
        return dataclasses.replace(self, **changes)

    # --- persistence helpers ----------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Everything but the samples, as stored next to them (the summary is a cached copy);
        see :mod:`lab.records.schema`."""
        return schema.document(self)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], samples: np.ndarray) -> Record:
        """The record a ``record.json`` object and its samples make (CorruptRecord if the
        object is not one this lab reads)."""
        return cls.from_stored(schema.parse(metadata), samples)

    @classmethod
    def from_stored(cls, stored: schema.Stored, samples: np.ndarray) -> Record:
        """The record of a ``record.json`` read by :func:`lab.records.schema.parse`, with the
        summary the listing shows: the cached one where its checksum binds it to these samples
        (``samples`` are the ones that record names, checked by the store), else computed."""
        record = cls(id=stored.id, name=stored.name, notes=stored.notes, tags=stored.tags,
                     samples=frozen_samples(samples), load_spec=stored.load_spec,
                     server_config=stored.server_config, environment=stored.environment,
                     thresholds_ms=stored.thresholds_ms, outcome=stored.outcome, markers=stored.markers,
                     hiccups=stored.hiccups)
        cached = stored.cached_summary()
        if cached is not None and cached.requests == record.samples.size:
            record.__dict__["summary"] = cached  # the cached property's slot, as in create()
        return record

    # --- identity ---------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (self.metadata() == other.metadata()
                and self.samples.dtype == other.samples.dtype
                and self.samples.tobytes() == other.samples.tobytes())

    __hash__ = None  # type: ignore[assignment]  # equal by content, and samples are arrays

    def __repr__(self) -> str:
        return (f"Record(id={self.id!r}, name={self.name!r}, requests={self.samples.size}, "
                f"started={self.environment.started_at!r})")


def flat_settings(load_spec: Mapping[str, Any], server_config: Mapping[str, Any] | None) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    _flatten("load", load_spec, flat)
    if server_config is not None:
        _flatten("server", server_config, flat)
    return flat


def _flatten(prefix: str, values: Mapping[str, Any], into: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, Mapping):
            _flatten(f"{prefix}.{key}", value, into)
        else:
            into[f"{prefix}.{key}"] = tuple(value) if isinstance(value, list) else value


_MISSING = object()


def differing_keys(flats: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys whose values differ between flat settings dicts (a missing key counts as a value)."""
    keys: list[str] = []
    for flat in flats:
        keys.extend(key for key in flat if key not in keys)
    return [key for key in keys
            if len({_comparable(flat.get(key, _MISSING)) for flat in flats}) > 1]


def _comparable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def short_key(key: str, keys: Sequence[str]) -> str:
    """``server.nodelay`` -> ``nodelay``, unless another key shares the short name."""
    short = key.split(".", 1)[-1]
    clashes = [k for k in keys if k.split(".", 1)[-1] == short]
    return short if len(clashes) == 1 else key

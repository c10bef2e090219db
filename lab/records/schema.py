"""``record.json``: what a saved record's metadata holds, written and read back in one place.

Everything of a record but its samples is one JSON object: the settings, the environment, the
run's outcome, the markers, a cached copy of the summary and the samples file's row count and
checksum. :func:`document` writes that object and :func:`parse` reads it back; the format and
version check, and the check of each part's shape, are made here once, for the listing (which
reads only this file) and for a whole record alike. The store (:mod:`lab.records.store`) only
moves the bytes, safely; a :class:`~lab.records.record.Record` only holds the values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from lab.errors import CorruptRecord
from lab.measure import plain
from lab.measure.run import RunOutcome
from lab.measure.summary import DEFAULT_THRESHOLDS_MS, RunSummary, run_span_ns
from lab.records.environment import Environment
from lab.units import NS_PER_S

RECORD_FORMAT = "latency-lab-record"
RECORD_VERSION = 1
METADATA_FILE = "record.json"
SAMPLES_FILE = "samples.npy"

# What a document that parses as JSON but has the wrong shape raises when it is read.
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, RecursionError)


@dataclass(frozen=True)
class Marker:
    """A change made while the run went on (``nodelay → off``), where the timeline shows it."""

    t_s: float  # seconds from the run's timeline zero: the first measured request's start
    label: str

    def as_dict(self) -> dict[str, Any]:
        return {"t_s": self.t_s, "label": self.label}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Marker:
        return cls(t_s=float(values["t_s"]), label=str(values["label"]))

    @classmethod
    def at(cls, at_ns: int, label: str, samples: np.ndarray) -> Marker:
        """A marker for a moment (perf_counter_ns) of the run ``samples`` come from."""
        return cls(t_s=round((at_ns - run_span_ns(samples)[0]) / NS_PER_S, 6), label=label)


@dataclass(frozen=True)
class SamplesFile:
    """What ``record.json`` says of the samples beside it."""

    rows: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Stored:
    """A ``record.json`` read back and checked: every part a record is made of but its samples."""

    id: str
    name: str
    notes: str
    tags: tuple[str, ...]
    load_spec: dict[str, Any]
    server_config: dict[str, Any] | None
    environment: Environment
    thresholds_ms: tuple[float, ...]
    outcome: RunOutcome | None
    markers: tuple[Marker, ...]
    summary: Any  # the cached summary as stored: read by cached_summary(), when wanted
    # How long the load was offered after the warm-up (load_spec's duration_seconds is what was
    # asked; a stopped run is shorter); None for a record made from samples alone.
    measured_duration_seconds: float | None = None
    samples: SamplesFile | None  # None in a document that was never saved (Record.metadata())

    def cached_summary(self) -> RunSummary | None:
        """The summary saved with the record, or None when it cannot be read: written by an
        older lab (its figures had other definitions), or damaged."""
        try:
            return RunSummary.from_dict(plain.mapping(self.summary, "summary"))
        except MALFORMED:
            return None


class Described(Protocol):
    """What a document is written from: a :class:`~lab.records.record.Record`'s parts (named
    here, not imported, since the record reads its documents through this module)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def notes(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def load_spec(self) -> dict[str, Any]: ...
    @property
    def server_config(self) -> dict[str, Any] | None: ...
    @property
    def environment(self) -> Environment: ...
    @property
    def thresholds_ms(self) -> tuple[float, ...]: ...
    @property
    def outcome(self) -> RunOutcome | None: ...
    @property
    def markers(self) -> tuple[Marker, ...]: ...
    @property
    def summary(self) -> RunSummary: ...


def document(record: Described) -> dict[str, Any]:
    """A record's ``record.json`` object, but the samples entry (the store adds it on saving)."""
    return {
        "format": RECORD_FORMAT, "version": RECORD_VERSION,
        "id": record.id, "name": record.name, "notes": record.notes, "tags": list(record.tags),
        "load_spec": record.load_spec, "server_config": record.server_config,
        "environment": record.environment.as_dict(),
        "thresholds_ms": list(record.thresholds_ms),
        "run": None if record.outcome is None else record.outcome.as_dict(),
        "measured_duration_seconds": None if record.outcome is None else record.outcome.measured_seconds,
        "markers": [marker.as_dict() for marker in record.markers],
        "summary": record.summary.as_dict(),
    }


def with_samples(metadata: Mapping[str, Any], rows: int, sha256: str) -> dict[str, Any]:
    """The document as saved: with the samples file's row count and checksum."""
    return {**metadata, "samples": {"file": SAMPLES_FILE, "rows": rows, "sha256": sha256}}


def with_description(metadata: Mapping[str, Any], *, name: str, notes: str,
                     tags: tuple[str, ...]) -> dict[str, Any]:
    """A saved document with its descriptive parts changed, everything else kept as it was."""
    return {**metadata, "name": name, "notes": notes, "tags": list(tags)}


def to_json(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, indent=2, allow_nan=False) + "\n"


def decode(data: bytes) -> Any:
    """The JSON value of a ``record.json``'s bytes; CorruptRecord when they are not JSON."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptRecord(f"{METADATA_FILE} is unreadable: {error}") from None
    except RecursionError:
        raise CorruptRecord(f"{METADATA_FILE} is unreadable: nested too deeply") from None


def check_version(metadata: Any) -> Mapping[str, Any]:
    """The document, if it is a record of a version this lab reads; CorruptRecord otherwise."""
    if not isinstance(metadata, Mapping) or metadata.get("format") != RECORD_FORMAT:
        raise CorruptRecord(f"not a record ({METADATA_FILE} is not a {RECORD_FORMAT})")
    if metadata.get("version") != RECORD_VERSION:
        raise CorruptRecord(f"record version {metadata.get('version')!r} is not supported "
                            f"(this lab reads version {RECORD_VERSION})")
    return metadata


def parse(metadata: Any) -> Stored:
    """A ``record.json`` object checked and read; CorruptRecord says what is wrong with it."""
    checked = check_version(metadata)
    try:
        return _parse(checked)
    except MALFORMED as error:
        raise CorruptRecord(f"{METADATA_FILE} is incomplete or malformed: {error}") from None


def _parse(metadata: Mapping[str, Any]) -> Stored:
    run = metadata.get("run")
    samples = metadata.get("samples")
    return Stored(
        id=plain.text(metadata["id"], "id"), name=plain.text(metadata["name"], "name"),
        notes=plain.text(metadata.get("notes", ""), "notes"),
        tags=tuple(plain.text(tag, "tags") for tag in plain.sequence(metadata.get("tags", []), "tags")),
        load_spec=dict(plain.mapping(metadata["load_spec"], "load_spec")),
        server_config=plain.mapping_or_none(metadata["server_config"], "server_config"),
        environment=Environment.from_dict(plain.mapping(metadata["environment"], "environment")),
        thresholds_ms=tuple(float(t) for t in plain.sequence(
            metadata.get("thresholds_ms", DEFAULT_THRESHOLDS_MS), "thresholds_ms")),
        outcome=None if run is None else RunOutcome.from_dict(plain.mapping(run, "run")),
        markers=tuple(Marker.from_dict(plain.mapping(marker, "markers"))
                      for marker in plain.sequence(metadata.get("markers", []), "markers")),
        summary=metadata.get("summary"),
        measured_duration_seconds=_measured_duration(metadata.get("measured_duration_seconds")),
        samples=None if samples is None else _samples_file(plain.mapping(samples, "samples")))


def _measured_duration(value: Any) -> float | None:
    """Absent in records written before it was kept; else seconds, finite and not negative."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
        raise ValueError(f"measured_duration_seconds must be seconds, not {value!r}")
    return float(value)


def _samples_file(values: Mapping[str, Any]) -> SamplesFile:
    rows = values["rows"]
    if isinstance(rows, bool) or not isinstance(rows, int):
        raise TypeError(f"samples.rows must be a whole number, not {rows!r}")
    return SamplesFile(rows=rows, sha256=plain.text(values["sha256"], "samples.sha256"))

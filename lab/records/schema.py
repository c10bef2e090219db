"""``record.json``: what a saved record's metadata holds, written and read back in one place.

Everything of a record but its samples is one JSON object: the settings, the environment, the
run's outcome, the markers, a cached copy of the summary and the samples file's row count and
checksum. :func:`document` writes that object and :func:`parse` reads it back; the format and
version check, and the check of each part's shape, are made here once, for the listing (which
reads only this file) and for a whole record alike. The store (:mod:`lab.records.store`) only
moves the bytes, safely; a :class:`~lab.records.record.Record` only holds the values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from lab.engine.stages import parse_stages
from lab.errors import ConfigError, CorruptRecord
from lab.measure import plain
from lab.measure.hiccup import HiccupRecord
from lab.measure.run import RunOutcome
from lab.measure.summary import DEFAULT_THRESHOLDS_MS, RunSummary, run_span_ns
from lab.measure.thresholds import parse_thresholds
from lab.records.environment import Environment
from lab.units import NS_PER_S

RECORD_FORMAT = "latency-lab-record"
RECORD_VERSION = 1
METADATA_FILE = "record.json"
SAMPLES_FILE = "samples.npy"

# What a document that parses as JSON but has the wrong shape raises when it is read.
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, RecursionError)
# The moments a record may hold. A start is shown as a pandas timestamp (the listing's
# "started" column), whose nanoseconds end in 2262; a measured window is in perf_counter_ns,
# which numpy's int64 sample columns hold.
EARLIEST_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST_START = dt.datetime(2262, 1, 1, tzinfo=dt.UTC)
MAX_NS = 2**63 - 1
# How much of a bad value a message quotes: a record may hold megabytes in one field.
SHOWN_CHARS = 40


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
    # The checksum of the cached summary together with these samples' (summary_sha256()):
    # None in a record saved before it was written, whose cache is then not trusted.
    summary_sha256: str | None = None


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
    hiccups: tuple[HiccupRecord, ...] = ()  # older records have none
    # How long the load was offered after the warm-up (load_spec's duration_seconds is what was
    # asked; a stopped run is shorter); None for a record made from samples alone.
    measured_duration_seconds: float | None = None
    samples: SamplesFile | None  # None in a document that was never saved (Record.metadata())

    def cached_summary(self) -> RunSummary | None:
        """The summary saved with the record, or None when it is not the one of these samples
        -- edited or damaged since it was saved (its checksum says so), written by an older
        lab (no checksum; its figures may have had other definitions) or unreadable: then the
        samples are summarized anew, so the listing and a loaded record show the same figures."""
        if self.samples is None or self.samples.summary_sha256 is None or \
                self.samples.summary_sha256 != summary_sha256(self.summary, self.samples.sha256):
            return None
        try:
            summary = RunSummary.from_dict(plain.mapping(self.summary, "summary"))
        except MALFORMED:
            return None
        # Saved by a lab with another catalogue of figures (a percentile added since): what
        # this lab would write differs, and the samples give the figures it lacks.
        return summary if json.loads(json.dumps(summary.as_dict())) == self.summary else None


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
    def hiccups(self) -> tuple[HiccupRecord, ...]: ...
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
        "hiccups": [hiccups.as_dict() for hiccups in record.hiccups],
        "summary": record.summary.as_dict(),
    }


def with_samples(metadata: Mapping[str, Any], rows: int, sha256: str) -> dict[str, Any]:
    """The document as saved: with the samples file's row count and checksum, and the
    checksum that binds the cached summary to them."""
    summary = json.loads(json.dumps(metadata["summary"], allow_nan=False))  # as it will read back
    return {**metadata, "samples": {"file": SAMPLES_FILE, "rows": rows, "sha256": sha256,
                                    "summary_sha256": summary_sha256(summary, sha256)}}


def summary_sha256(summary: Any, samples_sha256: str) -> str:
    """A cached summary's checksum, with its samples': a summary edited by hand, or moved to
    other samples, no longer matches it."""
    try:
        text = json.dumps(summary, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return ""
    return hashlib.sha256(f"{samples_sha256}\n{text}".encode()).hexdigest()


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
    """Every part checked for its type and range here, once: what a record holds reaches
    tables, reports and terminals, and a value no run could have written is damage."""
    run = metadata.get("run")
    samples = metadata.get("samples")
    return Stored(
        id=plain.text(metadata["id"], "id"), name=plain.text(metadata["name"], "name"),
        notes=plain.text(metadata.get("notes", ""), "notes"),
        tags=tuple(plain.text(tag, "tags") for tag in plain.sequence(metadata.get("tags", []), "tags")),
        load_spec=_load_spec(plain.mapping(metadata["load_spec"], "load_spec")),
        server_config=plain.mapping_or_none(metadata["server_config"], "server_config"),
        environment=_environment(plain.mapping(metadata["environment"], "environment")),
        thresholds_ms=tuple(_positive(t, "thresholds_ms") for t in plain.sequence(
            metadata.get("thresholds_ms", DEFAULT_THRESHOLDS_MS), "thresholds_ms")),
        outcome=None if run is None else _outcome(plain.mapping(run, "run")),
        markers=tuple(_marker(plain.mapping(marker, "markers"))
                      for marker in plain.sequence(metadata.get("markers", []), "markers")),
        summary=metadata.get("summary"),
        hiccups=tuple(HiccupRecord.from_dict(plain.mapping(hiccups, "hiccups"))
                      for hiccups in plain.sequence(metadata.get("hiccups", []), "hiccups")),
        measured_duration_seconds=_measured_duration(metadata.get("measured_duration_seconds")),
        samples=None if samples is None else _samples_file(plain.mapping(samples, "samples")))


def _measured_duration(value: Any) -> float | None:
    """Absent in records written before it was kept; else seconds, finite and not negative."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
        raise ValueError(f"measured_duration_seconds must be seconds, not {value!r}")
    return float(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def _whole(value: Any, what: str, *, minimum: int = 0, maximum: int = MAX_NS) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a whole number, not {_shown(value)}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{what} must be from {minimum} to {maximum}, not {_shown(value)}")
    return value


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{what} must be a finite number, not {_shown(value)}")
    return float(value)


def _positive(value: Any, what: str) -> float:
    number = _finite(value, what)
    if number <= 0:
        raise ValueError(f"{what} must be above 0, not {_shown(value)}")
    return number


# The load settings a record's views read back as more than a value to show: each must parse
# as the generator's own parser reads it (a record's stages are shown, its thresholds judged).
_LOAD_SPEC_TEXTS = {"stages": parse_stages, "thresholds": parse_thresholds}


def _load_spec(values: Mapping[str, Any]) -> dict[str, Any]:
    for key, parse in _LOAD_SPEC_TEXTS.items():
        if values.get(key) is None:
            continue
        what = f"load_spec.{key}"
        texts = tuple(plain.text(text, what) for text in plain.sequence(values[key], what))
        try:
            parse(texts)
        except ConfigError as error:
            raise ValueError(f"{what}: {error.message}") from None
    return dict(values)


# Environment fields by kind; a field a newer lab added is kept as it is, in ``extra``.
_ENVIRONMENT_COUNTS = ("cpu_count", "usable_cpus")
_ENVIRONMENT_FLAGS = ("git_dirty",)


def _environment(values: Mapping[str, Any]) -> Environment:
    for field in dataclasses.fields(Environment):
        value = values.get(field.name)
        what = f"environment.{field.name}"
        if value is None or field.name in ("extra", "started_at"):
            continue
        if field.name in _ENVIRONMENT_COUNTS:
            _whole(value, what, minimum=1, maximum=1_000_000)
        elif field.name in _ENVIRONMENT_FLAGS:
            if not isinstance(value, bool):
                raise TypeError(f"{what} must be true or false, not {_shown(value)}")
        else:
            plain.text(value, what)
    plain.mapping(values.get("extra", {}), "environment.extra")
    _start_time(values.get("started_at"))
    return Environment.from_dict(values)


def _start_time(value: Any) -> dt.datetime:
    what = "environment.started_at"
    try:
        started = dt.datetime.fromisoformat(plain.text(value, what))
    except ValueError:
        raise ValueError(f"{what} must be an ISO 8601 time, not {_shown(value)}") from None
    if started.tzinfo is None:
        raise ValueError(f"{what} must say its UTC offset, not {_shown(value)}")
    if not EARLIEST_START <= started < LATEST_START:
        raise ValueError(f"{what} must be from {EARLIEST_START.year} to {LATEST_START.year - 1}, "
                         f"not {_shown(value)}")
    return started


def _outcome(values: Mapping[str, Any]) -> RunOutcome:
    window = plain.sequence(values["window_ns"], "run.window_ns")
    if len(window) != 2:
        raise ValueError(f"run.window_ns must be [begin, end], not {_shown(window)}")
    begin = _whole(window[0], "run.window_ns begin")
    _whole(window[1], "run.window_ns end", minimum=begin)  # a window ends after it begins
    _whole(values.get("abandoned", 0), "run.abandoned")
    if not isinstance(values.get("stopped_early", False), bool):
        raise TypeError(f"run.stopped_early must be true or false, not {_shown(values['stopped_early'])}")
    for problem in plain.sequence(values.get("problems", []), "run.problems"):
        plain.text(problem, "run.problems")
    return RunOutcome.from_dict(values)


def _marker(values: Mapping[str, Any]) -> Marker:
    _finite(values["t_s"], "markers.t_s")
    plain.text(values["label"], "markers.label")
    return Marker.from_dict(values)


def _samples_file(values: Mapping[str, Any]) -> SamplesFile:
    digest = values.get("summary_sha256")
    return SamplesFile(
        rows=_whole(values["rows"], "samples.rows"), sha256=plain.text(values["sha256"], "samples.sha256"),
        summary_sha256=None if digest is None else plain.text(digest, "samples.summary_sha256"))

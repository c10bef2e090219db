"""Exports into the formats people already use: per-request CSV and Parquet, a JSON summary
with the full configuration, the HdrHistogram ``.hgrm`` text and ``.hlog`` interval log, and a
pandas DataFrame.

The per-request table keeps the raw sample columns exactly (nanosecond integers; a time that
does not apply is empty rather than -1) and adds the derived figures in milliseconds, so the
samples can be rebuilt from a CSV or Parquet export (:func:`samples_from_dataframe`). The raw
times are of the monotonic clock, which means nothing outside the run: each row also says
when its request started in seconds since the run's start and on the wall clock (UTC), so a
spreadsheet can place it in time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lab.errors import ConfigError
from lab.measure.hgrm import format_hgrm
from lab.measure.hlog import DEFAULT_INTERVAL_S
from lab.measure.hlog import hlog_text as format_hlog
from lab.measure.run import unsupported_paths
from lab.measure.samples import MISSING, SAMPLE_DTYPE, TIME_COLUMNS, ErrorKind, empty, start_ns
from lab.measure.stats import LatencySummary
from lab.measure.summary import RunSummary, metric_ns, pick_interval_s, run_span_ns, timeline_unsupported
from lab.records.files import write_text_atomically, write_with_atomically
from lab.records.record import Record
from lab.units import NS_PER_MS, NS_PER_S

SUMMARY_FORMAT = "latency-lab-summary"
# 2: the figures at the keys `bench --json` and `show --json` print them (latency_ms.p99), so a
# script reads one shape; version 1's `summary` object is still there for older readers.
SUMMARY_VERSION = 2
PARQUET_METADATA_KEY = b"latency_lab"

FORMATS: dict[str, str] = {
    "csv": "one row per request",
    "parquet": "one row per request, typed; the record's summary in the file's metadata",
    "json": "the summary, timeline, full configuration and environment",
    "hgrm": "HdrHistogram percentile distribution, as wrk2 --latency prints it",
    "hlog": "HdrHistogram interval log: one histogram per interval (--interval), tagged "
            "corrected and uncorrected",
}

ERROR_LABELS = [kind.label for kind in ErrorKind]


# --- DataFrame ------------------------------------------------------------------------------

def to_dataframe(source: Record | np.ndarray) -> pd.DataFrame:
    """One row per request: the raw sample fields plus latency, uncorrected latency, ttfb and
    connect time in ms (NaN for failed requests, or where a time does not apply); of a record,
    also ``start_s`` and ``start_utc``, when each request started (:func:`run_start`)."""
    samples = source.samples if isinstance(source, Record) else source
    frame = pd.DataFrame({
        name: pd.Series(samples[name], dtype="Int64").mask(samples[name] == MISSING)
        for name in TIME_COLUMNS})
    frame["tls_resumed"] = samples["tls_resumed"]
    frame["status"] = samples["status"]
    frame["response_bytes"] = samples["response_bytes"]
    frame["error"] = pd.Categorical([ErrorKind(int(code)).label for code in samples["error"]],
                                    categories=ERROR_LABELS)
    frame["worker"] = samples["worker"]
    frame["attempt"] = samples["attempt"]
    ok = samples["error"] == ErrorKind.NONE
    frame["latency_ms"] = _where_ok(ok, samples["done_ns"] - start_ns(samples))
    frame["uncorrected_latency_ms"] = _where_ok(ok, samples["done_ns"] - samples["sent_ns"])
    frame["ttfb_ms"] = _where_ok(ok, samples["first_byte_ns"] - samples["sent_ns"])
    frame["connect_ms"] = _where_ok(ok & (samples["connect_ns"] != MISSING), samples["connect_ns"])
    frame["tls_ms"] = _where_ok(ok & (samples["tls_ns"] != MISSING), samples["tls_ns"])
    if isinstance(source, Record) and samples.size:
        origin_ns, origin_utc = run_start(source)
        since_ns = start_ns(samples) - origin_ns
        frame["start_s"] = since_ns / NS_PER_S
        frame["start_utc"] = origin_utc + pd.to_timedelta(since_ns, unit="ns")
    return frame


def run_start(record: Record) -> tuple[int, pd.Timestamp]:
    """The instant a record's ``started_at`` names, on the monotonic clock of its samples, and
    that wall-clock time.

    A run saved by the generator started its wall clock where its load began, the warm-up's
    start (its measured window starts after the warm-up); a record made from samples alone
    has no such instant, and its first request stands for its start.
    """
    origin = run_span_ns(record.samples)[0]
    if record.outcome is not None:
        warmup = record.load_spec.get("warmup_seconds") or 0
        if isinstance(warmup, (int, float)) and not isinstance(warmup, bool):
            origin = record.outcome.window_ns[0] - round(warmup * NS_PER_S)
    return origin, pd.Timestamp(record.environment.started_at).tz_convert("UTC")


def _where_ok(mask: np.ndarray, values_ns: np.ndarray) -> np.ndarray:
    return np.where(mask, values_ns / NS_PER_MS, np.nan)


def samples_from_dataframe(frame: pd.DataFrame) -> np.ndarray:
    """Rebuild the raw samples from an exported table (derived columns are ignored)."""
    samples = empty(len(frame))
    for name in TIME_COLUMNS:
        if name in frame:  # (a table exported before a column existed lacks it: MISSING)
            samples[name] = frame[name].astype("Int64").fillna(MISSING).to_numpy(dtype=np.int64)
    if "tls_resumed" in frame:
        samples["tls_resumed"] = frame["tls_resumed"].to_numpy(dtype=np.int8)
    codes = {label: int(kind) for label, kind in zip(ERROR_LABELS, ErrorKind, strict=True)}
    samples["error"] = [codes[str(label)] for label in frame["error"]]
    for name in ("status", "response_bytes", "worker"):
        samples[name] = frame[name].to_numpy(dtype=SAMPLE_DTYPE[name])
    if "attempt" in frame:  # exported before retries existed: every row a first attempt
        samples["attempt"] = frame["attempt"].to_numpy(dtype=SAMPLE_DTYPE["attempt"])
    return samples


def read_csv(path: Path | str) -> pd.DataFrame:
    """A CSV export back as a DataFrame with the types :func:`to_dataframe` gives."""
    frame = pd.read_csv(path, dtype={name: "Int64" for name in TIME_COLUMNS}, keep_default_na=False,
                        na_values={name: [""] for name in (*TIME_COLUMNS, "latency_ms",
                                                           "uncorrected_latency_ms", "ttfb_ms",
                                                           "connect_ms", "tls_ms")})
    frame["error"] = pd.Categorical(frame["error"].astype(str), categories=ERROR_LABELS)
    if "start_utc" in frame:
        frame["start_utc"] = pd.to_datetime(frame["start_utc"], utc=True, format="ISO8601")
    return frame


def read_parquet(path: Path | str) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """A Parquet export back: the table, and the summary document stored with it."""
    table = pq.read_table(path)
    stored = (table.schema.metadata or {}).get(PARQUET_METADATA_KEY)
    return table.to_pandas(), (json.loads(stored) if stored else None)


# --- JSON summary ---------------------------------------------------------------------------

def summary_document(record: Record, *, interval_s: float | None = None) -> dict[str, Any]:
    """The record without its raw samples: the object ``bench --json`` printed for the run
    (``latency_ms``, ``rps``, ``outcome``...: the same keys, the same values), plus its
    settings, environment and timeline."""
    first, last = run_span_ns(record.samples)
    interval = interval_s or pick_interval_s((last - first) / NS_PER_S)
    timeline = record.timeline(interval)
    summary, unsupported = _summary_without_unsupported(record.summary)
    return {
        "format": SUMMARY_FORMAT, "version": SUMMARY_VERSION,
        "id": record.id, "name": record.name, "notes": record.notes, "tags": list(record.tags),
        **record.to_json_dict(),
        "load_spec": record.load_spec, "server_config": record.server_config,
        "environment": record.environment.as_dict(),
        "thresholds_ms": list(record.thresholds_ms),
        # version 1's place of the figures, kept for the scripts that read it
        "summary": summary,
        "summary_unsupported_percentiles": unsupported,
        "timeline": {"interval_s": interval, "rows": _timeline_rows(timeline)},
        "hiccups": [hiccups.as_dict() for hiccups in record.hiccups],
    }


def _timeline_rows(timeline: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON: an interval's percentile that its requests cannot support is null,
    as every other figure of the document is."""
    rows = [{key: _json_number(value) for key, value in row.items()}
            for row in timeline.to_dict(orient="records")]
    for column, unsupported in timeline_unsupported(timeline).items():
        for row, marked in zip(rows, unsupported, strict=True):
            if marked:
                row[column] = None
    return rows


def _summary_without_unsupported(summary: RunSummary) -> tuple[dict[str, Any], list[str]]:
    """The summary as JSON, with each percentile too few samples lie beyond nulled (as
    ``bench --json`` does, lab.measure.run.run_document), and the list of those nulled."""
    document = summary.as_dict()
    distributions = {field.name: getattr(summary, field.name) for field in dataclasses.fields(summary)
                     if isinstance(getattr(summary, field.name), LatencySummary)}
    distributions.update({f"by_status.{code}": value for code, value in summary.by_status.items()})
    unsupported = unsupported_paths(distributions)
    for path in unsupported:
        *parents, key = path.split(".")
        place = document
        for parent in parents:
            place = place[parent]
        place[key] = None
    return document, unsupported


def _json_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


# --- writers --------------------------------------------------------------------------------

def write_csv(record: Record, path: Path | str) -> Path:
    frame = to_dataframe(record)
    write_with_atomically(path, lambda temporary: frame.to_csv(temporary, index=False))
    return Path(path)


def write_parquet(record: Record, path: Path | str) -> Path:
    table = pa.Table.from_pandas(to_dataframe(record), preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[PARQUET_METADATA_KEY] = json.dumps(summary_document(record), allow_nan=False).encode()
    table = table.replace_schema_metadata(metadata)
    write_with_atomically(path, lambda temporary: pq.write_table(table, temporary))
    return Path(path)


def write_json(record: Record, path: Path | str) -> Path:
    write_text_atomically(path, json_text(record))
    return Path(path)


def json_text(record: Record) -> str:
    return json.dumps(summary_document(record), indent=2, allow_nan=False) + "\n"


def hgrm_text(record: Record, metric: str = "latency") -> str:
    """The ``.hgrm`` of one metric (default: latency, corrected as wrk2's "Recorded Latency")."""
    return format_hgrm(metric_ns(record.samples, metric))


def write_hgrm(record: Record, path: Path | str, metric: str = "latency") -> Path:
    write_text_atomically(path, hgrm_text(record, metric))
    return Path(path)


def hlog_text(record: Record, interval_s: float | None = None) -> str:
    """The run as an HdrHistogram interval log (lab.measure.hlog), one interval per
    ``interval_s`` (default a second), corrected and uncorrected latency as two tags."""
    interval = DEFAULT_INTERVAL_S if interval_s is None else interval_s
    if not interval > 0:
        raise ConfigError("interval_s", f"must be a positive number of seconds, not {interval!r}")
    return format_hlog(record.samples, started_at=record.started, interval_s=interval,
                       comment=f"latency-lab run {record.id} {record.name}")


def write_hlog(record: Record, path: Path | str, interval_s: float | None = None) -> Path:
    write_text_atomically(path, hlog_text(record, interval_s))
    return Path(path)


def export(record: Record, format: str, path: Path | str | None = None, *,
           metric: str = "latency", interval_s: float | None = None) -> Path:
    """Write one export; the path defaults to ``<id>-<name>.<format>`` in the current folder."""
    if format not in FORMATS:
        raise ConfigError("format", f"{format!r} is not allowed; allowed: one of {', '.join(FORMATS)}")
    target = Path(path) if path is not None else default_export_path(record, format)
    writers: dict[str, Callable[[], Path]] = {
        "csv": lambda: write_csv(record, target),
        "parquet": lambda: write_parquet(record, target),
        "json": lambda: write_json(record, target),
        "hgrm": lambda: write_hgrm(record, target, metric),
        "hlog": lambda: write_hlog(record, target, interval_s),
    }
    return writers[format]()


# Of a record's name, this much goes into a default file name: file systems allow 255 bytes
# per name, and a long description would make a name no one can type anyway.
MAX_SLUG_CHARS = 60


def default_export_path(record: Record, format: str, directory: Path | str = ".") -> Path:
    return Path(directory) / f"{file_stem(record)}.{format}"


def file_stem(record: Record) -> str:
    """``<id>-<name>``, the name made safe for a file name and cut short: what a file
    written of this record is called unless the user names it."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", record.name)[:MAX_SLUG_CHARS].strip("-.") or "run"
    return f"{record.id}-{slug}"


def format_for_path(path: Path | str) -> str | None:
    """The export format a file name's suffix names (``run.csv`` -> ``csv``), or None."""
    suffix = Path(path).suffix.lstrip(".").lower()
    return suffix if suffix in FORMATS else None

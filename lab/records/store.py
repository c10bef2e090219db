"""The data folder: where records are saved, listed, loaded and compared.

Layout: one directory per record, named by its id::

    data/20251127-101512-3f9a/record.json   metadata, settings, environment, cached summary
    data/20251127-101512-3f9a/samples.npy   the raw samples (numpy .npy: exact, loads fast)

A save builds the whole directory under a hidden temporary name and then renames it into
place in one step, so a crash or a kill mid-save leaves either no record or a complete one;
the listing skips hidden names, so an interrupted save is never seen as a record. Anything
else in the folder that is not a valid record is reported (a :class:`StoreWarning`, one line)
and skipped: one damaged or foreign entry never stops the good records from listing, showing
or exporting. Reading never blocks and never leaves the folder: only regular files are
opened (a FIFO named ``samples.npy`` would otherwise block a read for ever), and symbolic
links are not followed.

The folder is ``data/`` in the project by default; ``LAB_DATA_DIR`` or :func:`set_data_dir`
picks another.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from lab.errors import CorruptRecord, RecordNotFound
from lab.measure import plain, report
from lab.measure.samples import LEGACY_SAMPLE_DTYPES, SAMPLE_DTYPE, upgrade
from lab.measure.summary import RunSummary
from lab.records import schema
from lab.records.environment import SOURCE_ROOT
from lab.records.files import fsync_directory, write_text_atomically
from lab.records.record import Record, differing_keys, flat_settings, short_key
from lab.records.schema import METADATA_FILE, SAMPLES_FILE, Stored

DATA_DIR_ENV = "LAB_DATA_DIR"
SAVING_PREFIX = ".saving-"
DELETING_PREFIX = ".deleting-"
LATEST = "latest"
# An interrupted save older than this is left-over debris, not a save still in progress.
STALE_SAVE_SECONDS = 3600
# record.json is small (settings, environment, a summary); anything bigger is not ours.
MAX_METADATA_BYTES = 16 * 1024 * 1024

# Settings shown in the listing when present; settings that differ between runs are added.
KEY_SETTINGS = (
    "load.mode", "load.connections", "load.rate", "load.duration_seconds",
    "server.loop", "server.nodelay", "server.keepalive", "server.split_writes",
)
MAX_LISTED_SETTINGS = 10
MEASURED_COLUMN = "measured_s"  # how long the load ran, beside the duration asked (a stopped run)

_data_dir_override: Path | None = None

EXPORTS_DIRECTORY = "exports"
# A sweep's own document (its plan, effects and rounds: what `sweep --json` prints) beside the
# records of its runs, so a report made later shows the verdicts the sweep computed.
SWEEPS_DIRECTORY = "sweeps"


class StoreWarning(UserWarning):
    """Something in the data folder is not a readable record; it was skipped."""






def set_data_dir(path: Path | str | None) -> None:
    """Use another data folder from now on in this process (None: back to the default)."""
    global _data_dir_override
    _data_dir_override = None if path is None else Path(path)


def data_dir() -> Path:
    """Where records go: :func:`set_data_dir`, else ``$LAB_DATA_DIR``, else ``data/`` in the project."""
    if _data_dir_override is not None:
        return _data_dir_override
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    root = SOURCE_ROOT if (SOURCE_ROOT / "pyproject.toml").exists() else Path.cwd()
    return root / "data"


@dataclass(frozen=True)
class Problem:
    """A folder entry that is not a readable record, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"skipped {self.path}: {self.reason}"


@dataclass(frozen=True)
class RecordInfo:
    """What the listing needs of a record, read from its metadata without loading samples."""

    id: str
    name: str
    started_at: str
    tags: tuple[str, ...]
    notes: str
    settings: dict[str, Any]
    summary: RunSummary
    path: Path
    measured_seconds: float | None = None  # beside the asked load.duration_seconds


class RecordStore:
    """Records in one data folder."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir()

    def __repr__(self) -> str:
        return f"RecordStore({str(self.path)!r})"

    @property
    def exports_path(self) -> Path:
        """Where the panel writes exports: inside the data folder, never taken for a record."""
        return self.path / EXPORTS_DIRECTORY

    # --- saving -----------------------------------------------------------------------------

    def save(self, record: Record) -> Path:
        """Write a new record; it appears complete or not at all. Returns its directory."""
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / record.id
        if final.exists():
            raise FileExistsError(f"{final}: a record with id {record.id} is already saved")
        self._remove_stale_saves()
        temporary = self.path / f"{SAVING_PREFIX}{record.id}-{os.getpid()}"
        temporary.mkdir()
        try:
            digest = _write_samples(temporary / SAMPLES_FILE, record.samples)
            _write_metadata(temporary / METADATA_FILE,
                            schema.with_samples(record.metadata(), int(record.samples.size), digest))
            fsync_directory(temporary)
            _publish(temporary, final)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        fsync_directory(self.path)
        return final

    def update(self, reference: str, **changes: Any) -> Record:
        """Rename a record or change its notes or tags; the samples are never rewritten."""
        record = self.load(reference).replace(**changes)
        directory = self.path / record.id
        metadata, _ = _read_metadata(directory)
        write_text_atomically(directory / METADATA_FILE, schema.to_json(schema.with_description(
            metadata, name=record.name, notes=record.notes, tags=record.tags)))
        return record

    def save_sweep(self, sweep_id: str, document: Mapping[str, Any]) -> Path:
        """Keep a sweep's document (``SweepResult.to_json_dict()``) as sweeps/<sweep_id>.json."""
        if not looks_like_sweep_id(sweep_id):
            raise ValueError(f"{sweep_id!r} is not a sweep id")
        folder = self.path / SWEEPS_DIRECTORY
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sweep_id}.json"
        write_text_atomically(path, json.dumps(document, indent=2, default=str) + "\n")
        return path

    def load_sweep(self, sweep_id: str) -> dict[str, Any] | None:
        """The document :meth:`save_sweep` kept, or None when there is none by that id."""
        path = self.path / SWEEPS_DIRECTORY / f"{sweep_id}.json"
        if not looks_like_sweep_id(sweep_id) or not path.is_file():
            return None
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CorruptRecord(f"{path}: not a sweep's document ({error})") from None
        if not isinstance(document, dict) or document.get("sweep_id") != sweep_id:
            raise CorruptRecord(f"{path}: not the document of {sweep_id}")
        return document

    def delete(self, reference: str) -> None:
        """Remove a record: hidden first (one rename), then erased."""
        info = self.find(reference)
        hidden = self.path / f"{DELETING_PREFIX}{info.id}"
        os.rename(info.path, hidden)
        fsync_directory(self.path)
        shutil.rmtree(hidden)

    def _remove_stale_saves(self) -> None:
        now = time.time()
        for entry in self.path.glob(f"{SAVING_PREFIX}*"):
            try:
                if now - entry.stat().st_mtime > STALE_SAVE_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                continue

    # --- reading ----------------------------------------------------------------------------

    def scan(self) -> tuple[list[RecordInfo], list[Problem]]:
        """Every readable record (oldest first), and what was skipped and why."""
        infos: list[RecordInfo] = []
        problems: list[Problem] = []
        if not self.path.is_dir():
            return infos, problems
        for entry in sorted(self.path.iterdir()):
            if entry.name.startswith(".") or entry.name in (EXPORTS_DIRECTORY, SWEEPS_DIRECTORY):
                continue  # saves in progress, deletions, .gitkeep, hidden files, exports, sweeps
            try:
                infos.append(_read_info(entry))
            except CorruptRecord as error:
                problems.append(Problem(entry, str(error)))
            except Exception as error:  # one foreign entry, whatever it raises, must not hide the others
                problems.append(Problem(entry, f"unreadable ({type(error).__name__}: {error})"))
        infos.sort(key=lambda info: (info.started_at, info.id))
        return infos, problems

    def infos(self) -> list[RecordInfo]:
        """Readable records, oldest first; each skipped entry is reported as a StoreWarning."""
        infos, problems = self.scan()
        for problem in problems:
            warnings.warn(str(problem), StoreWarning, stacklevel=3)
        return infos

    def runs(self) -> pd.DataFrame:
        """One row per record: id, name, start time, key settings and summary figures."""
        return runs_table(self.infos())

    def find(self, reference: str) -> RecordInfo:
        """Resolve an id, a unique id prefix, a name (the newest of that name) or ``latest``."""
        infos = self.infos()
        if not infos:
            raise RecordNotFound(f"no records in {self.path}")
        if reference == LATEST:
            return infos[-1]
        exact = [info for info in infos if info.id == reference]
        if exact:
            return exact[0]
        named = [info for info in infos if info.name == reference]
        if named:
            return named[-1]
        prefixed = [info for info in infos if info.id.startswith(reference)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise RecordNotFound(f"{reference!r} matches several records: "
                                 + ", ".join(info.id for info in prefixed))
        known = ", ".join(sorted({info.name for info in infos})[:10])
        raise RecordNotFound(f"no record with id or name {reference!r} in {self.path} "
                             f"(names: {known})")

    def load(self, reference: str) -> Record:
        """The whole record, samples verified against the checksum saved with them."""
        return _read_record(self.find(reference).path)

    def load_many(self, references: Sequence[str]) -> list[Record]:
        return [self.load(reference) for reference in references]

    def __iter__(self) -> Iterator[RecordInfo]:
        return iter(self.infos())


# --- the one call the bench command makes -------------------------------------------------

def save_run(*, samples: np.ndarray, load_spec: Any, server_config: Any = None, name: str = "run",
             store: RecordStore | None = None, **details: Any) -> Record:
    """Make a record of a finished run and save it; returns the record.

    ``details`` go to :meth:`Record.create` (``notes``, ``tags``, ``event_loop``,
    ``started_at``, ``thresholds_ms``).
    """
    record = Record.create(samples=samples, load_spec=load_spec, server_config=server_config,
                           name=name, **details)
    (store or RecordStore()).save(record)
    return record


# --- listing table --------------------------------------------------------------------------

_SWEEP_ID = re.compile(r"^sweep-\d{8}-\d{6}-[0-9a-f]{4}$")


def looks_like_sweep_id(text: str) -> bool:
    """``sweep-20261207-225325-54b5``: what lab.experiments.sweeps names a sweep."""
    return bool(_SWEEP_ID.match(text))


def runs_table(infos: Sequence[RecordInfo]) -> pd.DataFrame:
    flats = [info.settings for info in infos]
    present = [key for key in KEY_SETTINGS if any(key in flat for flat in flats)]
    varying = [key for key in differing_keys(flats) if key not in present]
    setting_keys = (present + varying)[:MAX_LISTED_SETTINGS]
    rows = []
    for info in infos:
        row: dict[str, Any] = {
            "id": info.id, "name": info.name,
            # in UTC: one column of times, whatever offset each record was saved with
            "started": pd.Timestamp(info.started_at).tz_convert("UTC"),
            "tags": ", ".join(info.tags)}
        for key in setting_keys:
            row[short_key(key, setting_keys)] = info.settings.get(key)
        row[MEASURED_COLUMN] = info.measured_seconds
        row.update(report.listing_row(info.summary))
        rows.append(row)
    columns = ["id", "name", "started", "tags", *(short_key(key, setting_keys) for key in setting_keys),
               MEASURED_COLUMN, *report.listing_columns()]
    return pd.DataFrame(rows, columns=columns)


# --- files ----------------------------------------------------------------------------------
# Small module-level steps, so a test can stop a save between any two of them.

def _write_samples(path: Path, samples: np.ndarray) -> str:
    """Write the samples as .npy, fsynced; returns their SHA-256."""
    with open(path, "xb") as stream:
        np.save(stream, samples, allow_pickle=False)
        stream.flush()
        os.fsync(stream.fileno())
    return _sha256(path)


def _write_metadata(path: Path, metadata: Mapping[str, Any]) -> None:
    with open(path, "x", encoding="utf-8") as stream:
        stream.write(schema.to_json(metadata))
        stream.flush()
        os.fsync(stream.fileno())


def _publish(temporary: Path, final: Path) -> None:
    # rename(2) of a directory is atomic; it fails rather than merge into an existing record.
    os.rename(temporary, final)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _open_regular(path: Path) -> Iterator[BinaryIO]:
    """Open a file of a record for reading: a regular file only, never through a link.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer (it does
    nothing to a regular file); fstat then refuses anything that is not a regular file.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CorruptRecord(f"{path.name} is missing") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise CorruptRecord(f"{path.name} is a symbolic link (not followed)") from None
        raise CorruptRecord(f"{path.name} is unreadable: {error.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise CorruptRecord(f"{path.name} is not a regular file")
        stream = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    with stream:
        yield stream


def _require_directory(directory: Path) -> None:
    """A record is a real directory: a file or a link (which could lead out of the folder) is not."""
    try:
        mode = directory.lstat().st_mode
    except OSError as error:
        raise CorruptRecord(f"unreadable: {error.strerror}") from None
    if stat.S_ISLNK(mode):
        raise CorruptRecord("a symbolic link (not followed)")
    if not stat.S_ISDIR(mode):
        raise CorruptRecord("not a record (a file, not a record directory)")


def _read_metadata(directory: Path) -> tuple[dict[str, Any], schema.Stored]:
    """A record directory's ``record.json``, as stored and as read (lab.records.schema)."""
    _require_directory(directory)
    path = directory / METADATA_FILE
    if not os.path.lexists(path):
        raise CorruptRecord(f"not a record (no {METADATA_FILE})")
    with _open_regular(path) as stream:
        data = stream.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise CorruptRecord(f"{METADATA_FILE} is unreadable: larger than {MAX_METADATA_BYTES} bytes")
    metadata = schema.decode(data)
    stored = schema.parse(metadata)
    if stored.id != directory.name:
        raise CorruptRecord(f"its id {stored.id!r} does not match the folder name")
    return metadata, stored


def _read_info(directory: Path) -> RecordInfo:
    _, stored = _read_metadata(directory)
    rows = _samples_rows(directory / SAMPLES_FILE)
    if stored.samples is None:
        raise CorruptRecord(f"{METADATA_FILE} says nothing of {SAMPLES_FILE}")
    if rows != stored.samples.rows:
        raise CorruptRecord(f"{SAMPLES_FILE} has {rows} rows, the metadata says {stored.samples.rows}")
    try:
        started_at = plain.text(stored.environment.started_at, "started_at")
    except TypeError as error:
        raise CorruptRecord(f"{METADATA_FILE} is incomplete or malformed: {error}") from None
    return RecordInfo(
        id=stored.id, name=stored.name, started_at=started_at, tags=stored.tags, notes=stored.notes,
        settings=flat_settings(stored.load_spec, stored.server_config),
        # recomputed from the samples when the cached copy cannot be read
        summary=stored.cached_summary() or _read_record(directory).summary,
        path=directory, measured_seconds=_measured_seconds(stored))


def _measured_seconds(stored: Stored) -> float | None:
    if stored.measured_duration_seconds is not None:
        return stored.measured_duration_seconds
    return None if stored.outcome is None else stored.outcome.measured_seconds  # an older record


def _npy_header(stream: BinaryIO) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a .npy header, without reading the data.

    numpy reads the header with Python's own tokenizer and literal parser, so a garbled one
    can raise nearly anything (ValueError, SyntaxError, tokenize.TokenError...): any failure
    here means the file is not a readable .npy.
    """
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    except Exception as error:  # see the docstring: anything means "not a readable .npy"
        raise CorruptRecord(f"{SAMPLES_FILE} is unreadable: {type(error).__name__}: {error}") from None
    return tuple(shape), dtype


def _samples_rows(path: Path) -> int:
    """Rows in a .npy file, from its header alone (listing must not read every sample)."""
    with _open_regular(path) as stream:
        shape, dtype = _npy_header(stream)
    if not _lab_samples(dtype) or len(shape) != 1:
        raise CorruptRecord(f"{SAMPLES_FILE} is not in the lab's sample format")
    return int(shape[0])


def _lab_samples(dtype: np.dtype[Any]) -> bool:
    """The lab's sample layout, this one or one an older lab wrote (read, it is upgraded)."""
    return dtype == SAMPLE_DTYPE or dtype in LEGACY_SAMPLE_DTYPES


def _read_samples(path: Path, expected_sha256: str) -> np.ndarray:
    """The samples, checked against their checksum, read through one regular-file descriptor."""
    with _open_regular(path) as stream:
        digest = hashlib.sha256()
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
        if digest.hexdigest() != expected_sha256:
            raise CorruptRecord(f"{SAMPLES_FILE} does not match its checksum")
        stream.seek(0)
        shape, dtype = _npy_header(stream)
        if not _lab_samples(dtype) or len(shape) != 1:
            raise CorruptRecord(f"{SAMPLES_FILE} is not in the lab's sample format")
        data = stream.read()
    rows = len(data) // dtype.itemsize
    if rows < shape[0]:
        raise CorruptRecord(f"{SAMPLES_FILE} is truncated: {rows} of {shape[0]} rows")
    return upgrade(np.frombuffer(data, dtype=dtype, count=shape[0]))


def _read_record(directory: Path) -> Record:
    _, stored = _read_metadata(directory)
    if stored.samples is None:
        raise CorruptRecord(f"{directory}: {METADATA_FILE} has no samples checksum")
    try:
        samples = _read_samples(directory / SAMPLES_FILE, stored.samples.sha256)
    except CorruptRecord as error:
        raise CorruptRecord(f"{directory}: {error}") from None
    except (OSError, ValueError) as error:
        raise CorruptRecord(f"{directory}: {SAMPLES_FILE} is unreadable: {error}") from None
    return Record.from_stored(stored, samples)


# --- module-level shortcuts on the default folder -------------------------------------------

def runs() -> pd.DataFrame:
    return RecordStore().runs()


def load(reference: str) -> Record:
    return RecordStore().load(reference)

"""Side by side: what differs between runs, and how their figures compare as ratios.

Comparisons are ratios against a baseline measured in the same session:
absolute times on a shared machine are noise, ratios between runs are the finding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lab.errors import ConfigError
from lab.records.record import Record, differing_keys, short_key
from lab.records.store import RecordStore

# (row label, attribute path into a RunSummary)
FIGURES: tuple[tuple[str, str], ...] = (
    ("requests", "requests"),
    ("errors", "error_total"),
    ("requests/s", "rps"),
    ("mean ms", "latency.mean"),
    ("stdev ms", "latency.stdev"),
    ("p50 ms", "latency.p50"),
    ("p90 ms", "latency.p90"),
    ("p99 ms", "latency.p99"),
    ("p99.9 ms", "latency.p99_9"),
    ("p99.99 ms", "latency.p99_99"),
    ("max ms", "latency.max"),
    ("uncorrected p99 ms", "uncorrected.p99"),
    ("ttfb p50 ms", "ttfb.p50"),
    ("ttfb p99 ms", "ttfb.p99"),
)


def differing_settings(records: Sequence[Record]) -> list[str]:
    """Setting keys (``load.x``, ``server.y``) whose values are not the same in every record."""
    return differing_keys([record.settings() for record in records])


def labels(records: Sequence[Record]) -> list[str]:
    """A legend label per record: its name, followed by the settings that differ between the
    records when there are any (``nagle: nodelay=False``); the id too when names repeat and
    settings do not tell the records apart."""
    names = [record.name for record in records]
    keys = differing_settings(records)
    texts = [", ".join(f"{short_key(key, keys)}={record.settings().get(key, '-')}" for key in keys)
             for record in records] if keys else []
    if texts and (len(set(texts)) == len(texts) or len(set(names)) == len(names)):
        return [f"{name}: {text}" for name, text in zip(names, texts, strict=True)]
    if len(set(names)) == len(names):
        return names
    return [f"{record.name} ({record.id})" for record in records]


def figure_of(record: Record, path: str) -> float | int:
    value: Any = record.summary
    for part in path.split("."):
        value = getattr(value, part, None) if value is not None else None
    if value is None:
        return float("nan")
    return value if isinstance(value, int) else float(value)


def compare_runs(store: RecordStore, references: Sequence[str], *,
                 baseline: str | None = None) -> pd.DataFrame:
    """:func:`compare` for saved runs named as the CLI names them; ``baseline`` defaults to
    the first and is added to the table when it is not among ``references``."""
    records = store.load_many(references)
    index = 0
    if baseline is not None:
        base_id = store.find(baseline).id
        ids = [record.id for record in records]
        if base_id not in ids:
            records.insert(0, store.load(baseline))
        else:
            index = ids.index(base_id)
    return compare(records, baseline=index)


def compare(records: Sequence[Record], *, baseline: int = 0) -> pd.DataFrame:
    """One column per record, rows: the settings that differ, then the summary figures; plus a
    ``÷ baseline`` column per other record with the ratio of each figure to the baseline's."""
    if not records:
        raise ConfigError("records", "no records given")
    if not 0 <= baseline < len(records):
        raise ConfigError("baseline", f"{baseline} is out of range; allowed: from 0 to {len(records) - 1}")
    columns = _column_names(records)
    keys = differing_settings(records)
    rows: dict[str, list[Any]] = {}
    for key in keys:
        rows[key] = [record.settings().get(key, "-") for record in records]
    figures = {label: [figure_of(record, path) for record in records] for label, path in FIGURES}
    rows.update(figures)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype=object)
    base = columns[baseline]
    for index, column in enumerate(columns):
        if index == baseline:
            continue
        ratios: list[Any] = [""] * len(keys)
        ratios += [_ratio(figures[label][index], figures[label][baseline]) for label in figures]
        table[f"{column} ÷ {base}"] = ratios
    table.index.name = "setting / figure"
    return table


def _column_names(records: Sequence[Record]) -> list[str]:
    names = [record.name for record in records]
    if len(set(names)) == len(names):
        return names
    return [f"{record.name} ({record.id})" for record in records]


def _ratio(value: float, base: float) -> float:
    if math.isnan(value) or math.isnan(base) or base == 0:
        return float("nan")
    return value / base

"""Side by side: what differs between runs, and how their figures compare as ratios.

Comparisons are ratios against a baseline measured in the same session:
absolute times on a shared machine are noise, ratios between runs are the finding.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from lab.errors import ConfigError
from lab.measure import figures as catalogue

# How a table rounds a figure is the one report's (lab.measure.report); importable from here too.
from lab.measure.report import MISSING as MISSING
from lab.measure.report import SIGNIFICANT_DIGITS as SIGNIFICANT_DIGITS
from lab.measure.report import format_figure, format_ratio, side_by_side_column
from lab.measure.thresholds import Outcome
from lab.records.record import Record, differing_keys, short_key
from lab.records.store import RecordStore


def differing_settings(records: Sequence[Record]) -> list[str]:
    """Setting keys (``load.x``, ``server.y``) whose values are not the same in every record."""
    return differing_keys([record.settings() for record in records])


def labels(records: Sequence[Record]) -> list[str]:
    """A legend label per record: its name, followed by the settings that differ between the
    records when there are any (``nagle: nodelay=False``); the id too when names repeat and
    settings do not tell the records apart."""
    names = [record.name for record in records]
    keys = comparable_settings(records)
    values = {key: setting_texts(records, key) for key in keys}
    texts = [", ".join(f"{short_key(key, keys)}={values[key][index]}" for key in keys)
             for index in range(len(records))] if keys else []
    if texts and (len(set(texts)) == len(texts) or len(set(names)) == len(names)):
        return [f"{name}: {text}" for name, text in zip(names, texts, strict=True)]
    if len(set(names)) == len(names):
        return names
    return [f"{record.name} ({record.id})" for record in records]


def figure_of(record: Record, path: str) -> float | int:
    """One figure of a record's summary by its path (``latency.p99``); NaN where it has none."""
    return catalogue.value_at(record.summary, path)


def compare_runs(store: RecordStore, references: Sequence[str], *,
                 baseline: str | None = None) -> pd.DataFrame:
    """:func:`compare` for saved runs named as the CLI names them; ``baseline`` defaults to
    the first and is added to the table when it is not among ``references``."""
    records, index = runs_to_compare(store, references, baseline=baseline)
    return compare(records, baseline=index)


def runs_to_compare(store: RecordStore, references: Sequence[str], *,
                    baseline: str | None = None) -> tuple[list[Record], int]:
    """The saved runs named, and the index of the baseline among them (see :func:`compare_runs`)."""
    records = store.load_many(references)
    index = 0
    if baseline is not None:
        base_id = store.find(baseline).id
        ids = [record.id for record in records]
        if base_id not in ids:
            records.insert(0, store.load(baseline))
        else:
            index = ids.index(base_id)
    return records, index


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
    columns_of_figures = [side_by_side_column(record.summary) for record in records]
    figures = {heading: [column[heading] for column in columns_of_figures]
               for heading in columns_of_figures[0]}
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


def _ratio(value: float | str, base: float | str) -> float:
    # a figure marked as unsupported (too few samples beyond it) has no ratio either
    if isinstance(value, str) or isinstance(base, str) or math.isnan(value) or math.isnan(base) \
            or base == 0:
        return float("nan")
    return value / base


# --- the comparison as people read it -------------------------------------------------------

# Why a figure can be missing from every run of a comparison, said under the table.
MISSING_REASONS = {"uncorrected p99 ms": "only an open loop has an uncorrected latency"}
MAX_SHOWN_RUNS = 6  # more columns than this run past the right edge of a notebook's output


def format_setting(value: Any) -> str:
    """A setting's value in the words the widgets use: on/off, none, lists comma-separated."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ", ".join(format_setting(item) for item in value) or "none"
    if isinstance(value, float):
        return format_figure(value)
    return str(value)


def comparable_settings(records: Sequence[Record]) -> list[str]:
    """:func:`differing_settings` that every record has: a setting one run did not record (the
    server of a ``bench`` run the lab did not start, a knob newer than the record) is unknown
    there, and tells the runs apart no better than their names do."""
    settings = [record.settings() for record in records]
    return [key for key in differing_settings(records) if all(key in flat for flat in settings)]


def short_labels(records: Sequence[Record]) -> list[str]:
    """A short label per record, what tells it apart first: ``run 2 · nodelay off ·
    split_writes on`` (only the settings that differ, without their ``server.``/``load.``)."""
    keys = comparable_settings(records)
    values = {key: setting_texts(records, key) for key in keys}
    return [" · ".join([name, *(f"{short_key(key, keys)} {values[key][index]}" for key in keys)])
            for index, name in enumerate(_column_names(records))]


def setting_texts(records: Sequence[Record], key: str) -> list[str]:
    """One setting of each record as :func:`format_setting` words; URLs that share their
    scheme, host and port are shown by their path (``/fast`` vs ``/no-such-page``), the part
    that tells them apart."""
    values = [record.settings().get(key, "-") for record in records]
    if all(isinstance(value, str) and "://" in value for value in values):
        origins = {urlsplit(value)._replace(path="", query="", fragment="") for value in values}
        if len(origins) == 1:
            return [urlsplit(value)._replace(scheme="", netloc="").geturl() or "/" for value in values]
    return [format_setting(value) for value in values]


@dataclass(frozen=True)
class ComparisonView:
    """:func:`compare` made readable: rounded figures with their ratio to the baseline in the
    same cell, ``—`` for a figure not measured in one run, rows measured in no run left out
    (with the reason in ``notes``), and at most :data:`MAX_SHOWN_RUNS` runs."""

    table: pd.DataFrame  # text cells: one column per shown run, the baseline first
    failed: dict[str, str]  # column -> why that run failed (red in HTML)
    notes: tuple[str, ...]

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_html(self) -> str:
        """The table as HTML whose cells wrap, so it stays inside a notebook's output area."""
        head = "".join(f"<th{_failed_style(column in self.failed)}>{html.escape(str(column))}</th>"
                       for column in self.table.columns)
        rows = []
        for label, values in self.table.iterrows():
            cells = "".join(f"<td{_failed_style(column in self.failed and label == OUTCOME_ROW)}>"
                            f"{html.escape(str(value))}</td>"
                            for column, value in values.items())
            rows.append(f"<tr><th>{html.escape(str(label))}</th>{cells}</tr>")
        notes = "".join(f"<div>{html.escape(note)}</div>" for note in self.notes)
        return (f'<table class="lab-table lab-comparison"><thead><tr><th></th>{head}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table>{notes}")


OUTCOME_ROW = "outcome"
FAILED_COLOUR = "#b00020"


def _failed_style(failed: bool) -> str:
    return f' style="color:{FAILED_COLOUR}"' if failed else ""


def comparison_view(records: Sequence[Record], *, baseline: int = 0,
                    max_runs: int = MAX_SHOWN_RUNS,
                    setting_labels: Mapping[str, str] | None = None) -> ComparisonView:
    """The runs side by side as people read them (see :class:`ComparisonView`); with more runs
    than ``max_runs``, the baseline and the latest ones. ``setting_labels``: a setting's row
    label by its key (``load.duration_seconds`` -> ``duration (s)``, as the panel's widgets
    name it); a setting without one is named by its key. A setting some run did not record is
    left out, and the notes say which runs lack it."""
    table = compare(records, baseline=baseline)
    columns = list(table.columns[:len(records)])
    shown = _shown_runs(len(records), baseline, max_runs)
    notes = [f"(×r): the figure's ratio to {columns[baseline]}"] if len(records) > 1 else []
    if len(shown) < len(records):
        notes.append(f"showing {len(shown)} of {len(records)} runs (the baseline and the latest); "
                     "compare() gives them all")
    keys = differing_settings(records)
    comparable = comparable_settings(records)
    unrecorded = _unrecorded(records, [key for key in keys if key not in comparable], columns)
    notes.extend(unrecorded)
    settings = {key: setting_texts(records, key) for key in keys}
    row_labels = _setting_row_labels(comparable, setting_labels or {})
    view: dict[str, list[str]] = {columns[index]: [] for index in shown}
    failures = [failure(record) for record in records]
    failed = {columns[index]: reason for index, reason in enumerate(failures)
              if reason is not None and index in shown}
    labels_: list[str] = [OUTCOME_ROW]
    for index in shown:
        view[columns[index]].append(outcome_text(records[index]))
    for label in table.index:
        values = [table.loc[label, column] for column in columns]
        if label in keys and label not in comparable:
            continue  # said in the notes, once per part, not as a row of dashes per setting
        if label not in keys and all(_is_missing(value) for value in values):
            notes.append(f"not shown: {label} ({MISSING_REASONS.get(label, 'no run here measured it')})")
            continue
        labels_.append(row_labels[label] if label in keys else label)
        for index in shown:
            view[columns[index]].append(
                settings[label][index] if label in keys
                else _figure_cell(table, label, columns[index], columns[baseline]))
    marked = sorted({record.summary.latency.count for index, record in enumerate(records)
                     if index in shown and catalogue.unsupported_keys(record.summary.latency.count)},
                    reverse=True)
    if any(catalogue.UNSUPPORTED in cells for cells in view.values()):
        notes.extend(catalogue.unsupported_note(count) for count in marked)
    frame = pd.DataFrame(view, index=labels_)
    frame.index.name = table.index.name
    return ComparisonView(table=frame, failed=failed, notes=tuple(notes))


def _setting_row_labels(keys: Sequence[str], labels: Mapping[str, str]) -> dict[str, str]:
    """Each setting's row label: its given label, or its short key; a label two parts share
    (``keepalive`` of the server and of the load) gets its part in front."""
    rows = {key: labels.get(key, short_key(key, keys)) for key in keys}
    shared = {label for label in rows.values() if list(rows.values()).count(label) > 1}
    return {key: f"{key.split('.', 1)[0]} {label}" if label in shared else label
            for key, label in rows.items()}


def _unrecorded(records: Sequence[Record], keys: Sequence[str], columns: Sequence[str]) -> list[str]:
    """``server settings not recorded in: cli run`` per part of the settings (server, load)."""
    notes = []
    for part in dict.fromkeys(key.split(".", 1)[0] for key in keys):
        lacking = [column for record, column in zip(records, columns, strict=True)
                   if any(key.startswith(f"{part}.") and key not in record.settings() for key in keys)]
        notes.append(f"{part} settings not compared: not recorded in {', '.join(lacking)}")
    return notes


def _figure_cell(table: pd.DataFrame, label: str, column: str, base: str) -> str:
    """``43.98 (×239)``: the figure, and its ratio to the baseline's where there is one."""
    text = format_figure(table.loc[label, column])
    ratio = table.loc[label, f"{column} ÷ {base}"] if column != base else float("nan")
    return f"{text} ({format_ratio(ratio)})" if isinstance(ratio, float) and not math.isnan(ratio) else text


def outcome_text(record: Record) -> str:
    """The outcome row's cell: ``passed``, ``STOPPED: ...`` (the panel's word for a run ended
    with Stop) or ``FAILED: ...``."""
    outcome, reason = record.verdict()
    if reason is None:
        return "passed"
    return f"{'STOPPED' if outcome is Outcome.STOPPED else 'FAILED'}: {reason}"


def failure(record: Record) -> str | None:
    """Why the run failed (its verdict: no success, a problem it had, a threshold), in one
    line, or None when it passed: what the panel said in red when the run ended."""
    return record.verdict()[1]


def _shown_runs(count: int, baseline: int, max_runs: int) -> list[int]:
    if count <= max_runs:
        return list(range(count))
    latest = [index for index in range(count) if index != baseline][-(max_runs - 1):]
    return sorted([baseline, *latest])


def _is_missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)

"""A report to share: one self-contained HTML file of one run or several compared.

What a reader needs to trust and judge a result, in the order they need it: whether each run
passed (a failed run is named first and in red, never left out), the question (the settings
that differed between the runs), the comparison table (:func:`lab.records.compare.compare`'s
own figures: each cell carries the exact value in ``data-value`` beside its rounded text), the
latency corrected for coordinated omission beside the uncorrected one, the thresholds, the
plots of :mod:`lab.records.plots` (percentile spectrum, histogram, timeline) as inline SVG, every
load and server setting, the environment, and the raw samples attached.

The file opens offline in any browser and asks the network for nothing: no scripts, no fonts
(matplotlib writes its text as paths), no images but ``data:`` URIs. Samples are attached as a
gzip-compressed CSV in a ``data:`` link (the rows ``export --format csv`` writes) while the
compressed total stays under :data:`MAX_ATTACHED_BYTES`; a run over that cap says so and names
the command that exports it.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from lab.measure import report as views
from lab.measure.report import format_figure, format_ratio
from lab.measure.run import threshold_checks
from lab.records import plots
from lab.records.compare import (
    FAILED_COLOUR,
    OUTCOME_ROW,
    compare,
    differing_settings,
    failure,
    format_setting,
    labels,
    setting_texts,
)
from lab.records.export import hgrm_text, to_dataframe
from lab.records.files import write_text_atomically
from lab.records.record import Record

# Compressed samples a report carries in all: about 11 MB of base64 in the file. Enough for a
# few runs of ~100k requests each; a file much larger than that no longer travels by mail.
MAX_ATTACHED_BYTES = 8 * 1024 * 1024
# A row of samples took 18 bytes of gzip CSV in real closed-loop runs of the lab server (5k-10k
# rows) and 31 in lognormal synthetic ones; a run whose rows would not fit even at this floor is
# left out without writing its CSV (which takes ~35 us a row).
MIN_COMPRESSED_BYTES_PER_ROW = 10
COMPARISON_ID = "comparison"

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       max-width: 1100px; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d0d0; padding: 0.2em 0.55em; text-align: right; vertical-align: top; }
th:first-child, td.text { text-align: left; }
thead th { background: #f3f3f3; }
.failed { color: FAILED_COLOUR; font-weight: 600; } .passed { color: #2e7d32; font-weight: 600; }
.banner { border: 2px solid FAILED_COLOUR; color: FAILED_COLOUR; padding: 0.5em 0.8em; font-weight: 600; }
.note { color: #555; font-size: 0.92em; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0; } figure svg { width: 100%; height: auto; }
.scroll { overflow-x: auto; }
""".replace("FAILED_COLOUR", FAILED_COLOUR)  # red as compare's HTML


@dataclass(frozen=True)
class Section:
    """One part of a report: an anchor, a heading and its HTML."""

    anchor: str
    title: str
    body: str


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# --- figures as inline SVG ------------------------------------------------------------------

_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>", re.DOTALL)


def inline_svg(figure: Figure) -> str:
    """A Figure as an ``<svg>`` element to paste into HTML: text drawn as paths (no font to
    fetch), without the XML prologue and DOCTYPE (which names the SVG DTD by URL) or the
    metadata block (which names Dublin Core's)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg")
    text = _METADATA.sub("", _PROLOGUE.sub("", buffer.getvalue(), count=1))
    return text.strip()


def figure_html(figure: Figure, caption: str) -> str:
    return f"<figure>{inline_svg(figure)}<figcaption class='note'>{esc(caption)}</figcaption></figure>"


# --- tables ---------------------------------------------------------------------------------

def number_cell(value: Any, *, ratio: bool = False) -> str:
    """A figure rounded as tables round it, its exact value in ``data-value`` (what a reader's
    script, or a test, reads back)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return f"<td class='text'>{esc(format_setting(value) if value != '' else '')}</td>"
    # numpy's scalars print as np.float64(...): the exact value is the plain number's repr
    plain = float(value) if isinstance(value, (float, np.floating)) else int(value)
    text = format_ratio(float(plain)) if ratio else format_figure(plain)
    exact = "nan" if isinstance(plain, float) and math.isnan(plain) else repr(plain)
    return f"<td data-value='{exact}'>{esc(text)}</td>"


def comparison_table(records: Sequence[Record], *, baseline: int = 0) -> str:
    """:func:`compare`'s table, every cell of it, with an outcome row on top (red for a run
    that failed)."""
    table = compare(records, baseline=baseline)
    columns = list(table.columns)
    failures = [failure(record) for record in records]
    head = "".join(f"<th>{esc(column)}</th>" for column in columns)
    outcome = "".join(
        f"<td class='text {'failed' if reason else 'passed'}'>"
        f"{esc('FAILED: ' + reason if reason else 'passed')}</td>" for reason in failures)
    outcome += "<td></td>" * (len(columns) - len(records))
    rows = [f"<tr><th>{OUTCOME_ROW}</th>{outcome}</tr>"]
    for label, values in table.iterrows():
        cells = "".join(number_cell(value, ratio=index >= len(records))
                        for index, value in enumerate(values.tolist()))
        rows.append(f"<tr><th>{esc(label)}</th>{cells}</tr>")
    return (f"<div class='scroll'><table id='{COMPARISON_ID}'><thead><tr><th>{esc(table.index.name)}</th>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def key_value_table(rows: Sequence[tuple[str, Sequence[Any]]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{esc(column)}</th>" for column in columns)
    body = "".join(f"<tr><th>{esc(key)}</th>"
                   + "".join(f"<td class='text'>{esc(format_setting(value))}</td>" for value in values)
                   + "</tr>" for key, values in rows)
    return (f"<div class='scroll'><table><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


# --- sections of a report of runs -----------------------------------------------------------

def verdict_section(records: Sequence[Record], names: Sequence[str]) -> Section:
    items = []
    for record, name in zip(records, names, strict=True):
        reason = failure(record)
        state = f"<span class='failed'>FAILED: {esc(reason)}</span>" if reason else \
            "<span class='passed'>passed</span>"
        details = []
        outcome = record.run_outcome()
        if outcome.stopped_early:
            details.append("stopped early: its figures cover only the part that ran")
        details.extend(outcome.problems)
        summary = record.summary
        if summary.error_total:
            details.append("errors: " + ", ".join(f"{kind} {count:,}"
                                                  for kind, count in summary.errors.items()))
        extra = f"<div class='note'>{esc('; '.join(details))}</div>" if details else ""
        items.append(f"<li><b>{esc(name)}</b> ({esc(record.id)}): {state}{extra}</li>")
    failed = sum(failure(record) is not None for record in records)
    banner = (f"<p class='banner'>{failed} of {len(records)} runs FAILED: their figures are shown "
              "below like the others, marked in red.</p>" if failed else "")
    return Section("verdicts", "Each run: passed or failed", f"{banner}<ul>{''.join(items)}</ul>")


def question_section(records: Sequence[Record], names: Sequence[str]) -> Section:
    """What differed between the runs: the question the comparison answers."""
    if len(records) == 1:
        return Section("question", "The question",
                       "<p>One run: nothing is compared. Its settings are listed in full below.</p>")
    keys = differing_settings(records)
    if not keys:
        text = ("<p>The runs share every setting: a difference between their figures is the "
                "machine's noise, not a setting's effect.</p>")
        return Section("question", "The question", text)
    rows = [(key, setting_texts(records, key)) for key in keys]
    text = (f"<p>What differed between the runs ({len(keys)} setting{'s' if len(keys) > 1 else ''}); "
            "every other setting was the same:</p>" + key_value_table(rows, names))
    return Section("question", "The question", text)


def comparison_section(records: Sequence[Record], baseline: int) -> Section:
    base = labels(records)[baseline] if len(records) > 1 else ""
    note = (f"<p class='note'>Latencies in ms. The ÷ columns are each figure's ratio to the "
            f"baseline, {esc(base)}. The exact value of every cell is in its data-value attribute; "
            "a ratio of two runs is one observation, not an interval: repeated, interleaved rounds "
            "(python -m lab sweep) give one.</p>" if len(records) > 1 else
            "<p class='note'>Latencies in ms.</p>")
    table = comparison_table(records, baseline=baseline)
    return Section("comparison", "The figures side by side", table + note)


def omission_section(records: Sequence[Record], names: Sequence[str]) -> Section:
    """Each run's distributions in full: latency corrected for coordinated omission (from the
    intended send) beside the uncorrected one (from the actual send), TTFB and connect."""
    parts = []
    for record, name in zip(records, names, strict=True):
        table = views.latency_table(record.summary)
        head = "".join(f"<th>{esc(column)}</th>" for column in table.columns)
        body = "".join(f"<tr><th>{esc(label)}</th>" + "".join(number_cell(value) for value in values.tolist())
                       + "</tr>" for label, values in table.iterrows())
        parts.append(f"<h3>{esc(name)}</h3><table><thead><tr><th>ms</th>{head}</tr></thead>"
                     f"<tbody>{body}</tbody></table>")
    note = ("<p class='note'>latency is timed from each request's intended send where the run "
            "had one (an open loop), so a stall is charged to every request it delayed; "
            "uncorrected is timed from the actual send, as a closed-loop tool reports it. The gap "
            "between the two columns is what coordinated omission would have hidden. A closed "
            "loop has no intended send: it has no uncorrected column.</p>")
    return Section("omission", "Coordinated omission: corrected and uncorrected", note + "".join(parts))


def thresholds_section(records: Sequence[Record], names: Sequence[str]) -> Section:
    parts = []
    for record, name in zip(records, names, strict=True):
        checks = threshold_checks(record.load_spec, record.summary)
        lines = [f"<li class='{'passed' if check.held else 'failed'}'>{esc(check.describe())}</li>"
                 for check in checks] or ["<li>no pass/fail thresholds were set</li>"]
        # the words and rounding of show's text (lab.measure.report.describe_lines)
        shares = ", ".join(f"{share * 100:.2f} % under {threshold} ms"
                           for threshold, share in record.summary.share_under.items()
                           if not math.isnan(share)) or "none measured"
        parts.append(f"<h3>{esc(name)}</h3><ul>{''.join(lines)}</ul>"
                     f"<p class='note'>share of requests under each reporting threshold: {esc(shares)}</p>")
    return Section("thresholds", "Thresholds", "".join(parts))


def figures_section(records: Sequence[Record], names: Sequence[str]) -> Section:
    listed = list(records)
    # a run without a success has no latency to draw: said above the plots, not left to be
    # guessed from a legend that lacks it
    undrawn = [name for record, name in zip(records, names, strict=True) if not record.summary.succeeded]
    parts = [f"<p class='failed'>Not in the latency plots (no request succeeded): "
             f"{esc(', '.join(undrawn))}.</p>"] if undrawn else []
    parts += [figure_html(plots.percentile_spectrum(listed),
                         "Latency by percentile, x = 1/(1-p) on a log axis: the tail gets as much "
                         "room as the median." + (" Dashed: uncorrected." if len(listed) == 1
                                                  and listed[0].summary.open_loop else ""))]
    if len(listed) > 1 and any(record.summary.open_loop for record in listed):
        parts.append(figure_html(plots.percentile_spectrum(listed, metric="uncorrected"),
                                 "The same runs uncorrected (from the actual send): compare with the "
                                 "spectrum above."))
    parts.append(figure_html(plots.histogram(listed), "Share of requests per latency bin (log x)."))
    parts.append(figure_html(plots.timeline(listed),
                             "Latency over the run (dots: requests; lines: p50 and p99 per interval) "
                             "and requests and errors per second."))
    return Section("figures", "Distributions and timeline", "".join(parts))


def settings_section(records: Sequence[Record], names: Sequence[str]) -> Section:
    """Every load and server setting of every run, the differing ones first."""
    settings = [record.settings() for record in records]
    keys: list[str] = []
    for flat in settings:
        keys.extend(key for key in flat if key not in keys)
    differing = set(differing_settings(records))
    ordered = [key for key in keys if key in differing] + [key for key in keys if key not in differing]
    rows = [(key, [flat.get(key, "-") for flat in settings]) for key in ordered]
    extra = []
    for record, name in zip(records, names, strict=True):
        if record.server_config is None:
            extra.append(f"{name}: the server's settings were not recorded (a server the lab did not start)")
        if record.markers:
            extra.append(f"{name}: changed during the run: " + ", ".join(
                f"{marker.label} at {marker.t_s:.2f} s" for marker in record.markers))
        if record.notes:
            extra.append(f"{name}: notes: {record.notes}")
        if record.tags:
            extra.append(f"{name}: tags: {', '.join(record.tags)}")
    notes = "".join(f"<p class='note'>{esc(line)}</p>" for line in extra)
    return Section("settings", "Every setting", key_value_table(rows, names) + notes)


ENVIRONMENT_FIELDS = ("started_at", "hostname", "os", "kernel", "machine", "cpu_model", "cpu_count",
                      "usable_cpus", "python", "python_implementation", "lab", "uvloop", "httptools",
                      "numpy", "event_loop", "git_commit", "git_dirty")


def environment_section(records: Sequence[Record], names: Sequence[str]) -> Section:
    rows = [(name, [getattr(record.environment, name) for record in records]) for name in ENVIRONMENT_FIELDS]
    extra_keys = sorted({key for record in records for key in record.environment.extra})
    rows += [(key, [record.environment.extra.get(key, "-") for record in records]) for key in extra_keys]
    dirty = [name for record, name in zip(records, names, strict=True) if record.environment.git_dirty]
    note = (f"<p class='note'>{esc(', '.join(dirty))}: run from a checkout with uncommitted "
            "changes: the commit alone does not say what code ran.</p>" if dirty else "")
    return Section("environment", "Environment", key_value_table(rows, names) + note)


def run_texts_section(records: Sequence[Record], names: Sequence[str]) -> Section:
    """Each run as ``show`` prints it: the same figures in the words of the text views."""
    parts = [f"<h3>{esc(name)}</h3><pre>"
             + esc("\n".join(views.describe_lines(record.summary, record.load_spec, record.run_outcome())))
             + "</pre>" for record, name in zip(records, names, strict=True)]
    return Section("runs", "Each run in words", "".join(parts))


# --- the raw data ---------------------------------------------------------------------------

def data_link(data: bytes, media_type: str, file_name: str, text: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f"<a download='{esc(file_name)}' href='data:{media_type};base64,{encoded}'>{esc(text)}</a>"


def size_text(count: int) -> str:
    return f"{count / 1024:,.0f} KiB" if count < 1024 * 1024 else f"{count / 1024 / 1024:,.1f} MiB"


def data_section(records: Sequence[Record], names: Sequence[str], *,
                 budget_bytes: int = MAX_ATTACHED_BYTES) -> Section:
    """Each run's samples as a gzip-compressed CSV, while the total stays under the budget;
    the corrected latency's .hgrm (small) always."""
    items = []
    left = budget_bytes
    for record, name in zip(records, names, strict=True):
        stem = f"{record.id}-{re.sub(r'[^A-Za-z0-9._-]+', '-', record.name)[:60]}"
        hgrm = hgrm_text(record).encode()
        links = [data_link(hgrm, "text/plain", f"{stem}.hgrm", f"latency .hgrm ({size_text(len(hgrm))})")]
        least = record.samples.size * MIN_COMPRESSED_BYTES_PER_ROW
        csv = b"" if least > left else gzip.compress(
            to_dataframe(record).to_csv(index=False).encode(), compresslevel=6, mtime=0)
        if least <= left and len(csv) <= left:
            left -= len(csv)
            links.insert(0, data_link(csv, "application/gzip", f"{stem}.csv.gz",
                                      f"samples: {record.samples.size:,} rows, CSV, gzip "
                                      f"({size_text(len(csv))})"))
        else:
            size = size_text(len(csv)) if csv else f"at least {size_text(least)}"
            links.insert(0, esc(f"samples not attached: {size} compressed would take the "
                                f"report past its cap of {size_text(budget_bytes)}; "
                                f"python -m lab export {record.id} --format csv writes them"))
        items.append(f"<li><b>{esc(name)}</b>: {' · '.join(links)}</li>")
    note = ("<p class='note'>The CSV holds one row per request, as <code>python -m lab export "
            "--format csv</code> writes it (pandas: <code>pd.read_csv(path)</code> reads the .gz). "
            "The .hgrm is HdrHistogram's percentile distribution of the corrected latency.</p>")
    return Section("data", "Raw data", f"<ul>{''.join(items)}</ul>{note}")


# --- the page -------------------------------------------------------------------------------

def page(title: str, sections: Sequence[Section], *, lead: str = "") -> str:
    """A whole HTML document: a title, a table of contents and the sections; nothing in it
    reaches outside the file."""
    contents = "".join(f"<li><a href='#{section.anchor}'>{esc(section.title)}</a></li>"
                       for section in sections)
    body = "".join(f"<section id='{section.anchor}'><h2>{esc(section.title)}</h2>{section.body}</section>"
                   for section in sections)
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class='note'>Latency Lab report, made {made}. "
            "Everything it shows is in this one file.</p>"
            f"{lead}<nav><ul>{contents}</ul></nav>{body}</body></html>\n")


def run_sections(records: Sequence[Record], *, baseline: int = 0) -> list[Section]:
    """Every section of a report of ``records`` (a single run or several compared)."""
    names = list(labels(records)) if len(records) > 1 else [records[0].name]
    return [verdict_section(records, names), question_section(records, names),
            comparison_section(records, baseline), omission_section(records, names),
            thresholds_section(records, names), figures_section(records, names),
            settings_section(records, names), environment_section(records, names),
            run_texts_section(records, names), data_section(records, names)]


def default_title(records: Sequence[Record]) -> str:
    if len(records) == 1:
        return f"{records[0].name} ({records[0].id})"
    return " vs ".join(record.name for record in records[:4]) + (" …" if len(records) > 4 else "")


def report_html(records: Record | Sequence[Record], *, baseline: int = 0, title: str | None = None) -> str:
    """The report of one run, or of several compared against ``baseline`` (an index)."""
    listed = plots.as_list(records)
    return page(title or default_title(listed), run_sections(listed, baseline=baseline))


def write_report(records: Record | Sequence[Record], path: Path | str, *, baseline: int = 0,
                 title: str | None = None) -> Path:
    """Write :func:`report_html` to ``path`` atomically; returns the path."""
    write_text_atomically(path, report_html(records, baseline=baseline, title=title))
    return Path(path)

"""``python -m lab runs|show|export|plot|compare``: the saved records, from the command line.

A run is named by its id, a unique id prefix, its name (the newest run of that name) or
``latest``.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from lab.cli.text import printable
from lab.errors import ConfigError, CorruptRecord, RecordNotFound
from lab.measure import report
from lab.measure.hiccup import describe_hiccups
from lab.measure.run import latency_document
from lab.measure.summary import METRICS
from lab.records.compare import compare_runs
from lab.records.export import (
    FORMATS,
    export,
    file_stem,
    format_for_path,
    hgrm_text,
    hlog_text,
    json_text,
    to_dataframe,
)
from lab.records.record import Record
from lab.records.store import MEASURED_COLUMN, RecordInfo, RecordStore, StoreWarning, runs_table

RUN_HELP = "a run: id, id prefix, name (the newest of that name) or 'latest'"
PLOT_KIND_HELP = "hist: histogram (log x); cdf; percentiles: HdrHistogram-style spectrum; timeline"
# The spectrum: every percentile of the run at once, the tail included (HdrHistogram's view)
DEFAULT_PLOT_KIND = "percentiles"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs = subparsers.add_parser(
        "runs", help="list the saved runs",
        description="List the saved runs, oldest first: a table as wide as a terminal (the "
                    "settings that differ between the runs listed come first), or --json.")
    _add_data_dir(runs)
    runs.add_argument("--last", type=int, default=None, metavar="N", help="only the N newest runs")
    runs.add_argument("--tag", action="append", default=[], metavar="TAG",
                      help="only runs with this tag (repeatable: runs with every one)")
    runs.add_argument("--name", default=None, metavar="PATTERN",
                      help="only runs whose name matches, e.g. baseline or 'nodelay*'")
    runs.add_argument("--columns", default=None, metavar="A,B,...",
                      help="these columns, in this order (e.g. id,name,connections,p99_ms); "
                           "a wrong name lists them all")
    runs.add_argument("--all-columns", action="store_true",
                      help=f"every column, however wide [default: what fits {TABLE_WIDTH} characters]")
    runs.add_argument("--json", action="store_true",
                      help="one JSON list, a run per item, its figures at bench --json's keys")
    runs.set_defaults(run=run_runs)

    show = subparsers.add_parser("show", help="print one saved run: settings, environment, summary")
    _add_data_dir(show)
    show.add_argument("reference", metavar="RUN", help=RUN_HELP)
    show.add_argument("--timeline", action="store_true", help="also print the per-interval timeline")
    show.add_argument("--json", action="store_true",
                      help="print the JSON object `bench --json` printed for this run, and nothing else")
    show.set_defaults(run=run_show)

    exporting = subparsers.add_parser("export", help="write a saved run as csv, parquet, json, hgrm or hlog")
    _add_data_dir(exporting)
    exporting.add_argument("reference", metavar="RUN", help=RUN_HELP)
    exporting.add_argument("--format", choices=tuple(FORMATS),
                           help="; ".join(f"{name}: {text}" for name, text in FORMATS.items())
                           + " [default: from the suffix of -o]")
    exporting.add_argument("-o", "--output", metavar="PATH",
                           help="file to write ('-' for standard output; default: <id>-<name>.<format>)")
    exporting.add_argument("--metric", choices=tuple(METRICS), default="latency",
                           help="which figure the hgrm distribution is of [default: latency, "
                                "corrected where the run has intended send times]")
    exporting.add_argument("--interval", dest="interval_s", type=float, default=None, metavar="S",
                           help="seconds per histogram of an hlog interval log [default: 1]")
    exporting.set_defaults(run=run_export)

    plotting = subparsers.add_parser("plot", help="plot one run, or several overlaid, to a file")
    _add_data_dir(plotting)
    plotting.add_argument("runs", nargs="+", metavar="RUN", help=RUN_HELP)
    plotting.add_argument("--kind", default=DEFAULT_PLOT_KIND,
                          choices=("hist", "cdf", "percentiles", "timeline"),
                          help=f"{PLOT_KIND_HELP} [default: {DEFAULT_PLOT_KIND}]")
    plotting.add_argument("--metric", choices=tuple(METRICS), default="latency",
                          help="figure to plot (hist, cdf, percentiles) [default: latency]")
    plotting.add_argument("-o", "--output", default=None, metavar="FILE",
                          help="picture to write; .png, .svg or .pdf [default: "
                               "<id>-<name>-<kind>.png of the first run, here]")
    plotting.set_defaults(run=run_plot)

    comparing = subparsers.add_parser("compare", help="saved runs side by side, with ratios")
    _add_data_dir(comparing)
    comparing.add_argument("runs", nargs="+", metavar="RUN", help=RUN_HELP)
    comparing.add_argument("--baseline", metavar="RUN", help="ratios against this run [default: the first]")
    comparing.set_defaults(run=run_compare)


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="records folder [default: $LAB_DATA_DIR, else data/ in the project]")


def _store(arguments: argparse.Namespace) -> RecordStore:
    """The records folder to read. One named with --data-dir must exist: a mistyped folder
    would otherwise read as "no runs saved", which it is not."""
    if arguments.data_dir is not None and not arguments.data_dir.is_dir():
        folder = arguments.data_dir
        raise ConfigError("data_dir", f"{folder} is not a folder" if folder.exists()
                          else f"the folder {folder} does not exist")
    return RecordStore(arguments.data_dir)


# --- errors and warnings --------------------------------------------------------------------

Command = Callable[[argparse.Namespace], int]


def _reports_store_problems(command: Command) -> Command:
    """Skipped entries in the data folder go to stderr, one line each; a missing or corrupt run
    ends the command with a message and exit status 1, not a traceback."""
    @functools.wraps(command)
    def run(arguments: argparse.Namespace) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StoreWarning)
            try:
                status = command(arguments)
            except (RecordNotFound, CorruptRecord) as error:
                _print_skipped(caught)
                print(printable(f"lab: {error}"), file=sys.stderr)
                return 1
        _print_skipped(caught)
        return status
    return run


def _print_skipped(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for warning in caught:
        text = str(warning.message)
        if not issubclass(warning.category, StoreWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        elif text not in seen:
            seen.add(text)
            print(printable(f"lab: {text}"), file=sys.stderr)


# --- commands -------------------------------------------------------------------------------

@_reports_store_problems
def run_runs(arguments: argparse.Namespace) -> int:
    if arguments.last is not None and arguments.last < 1:
        raise ConfigError("last", f"{arguments.last} runs: give 1 or more")
    store = _store(arguments)
    saved = store.infos()
    infos = _chosen_runs(saved, arguments)
    if arguments.json:
        print(json.dumps([_run_item(info) for info in infos], default=str))
        return 0
    if not infos:
        print("no saved run matches" if saved else f"no runs saved in {store.path}")
        return 0
    table = runs_table(infos)
    if arguments.columns is not None:
        table = table[_named_columns(arguments.columns, table)]
    # Every text cell, names of settings included, came from a record file: escaped.
    table = table.assign(**({"started": table["started"].dt.strftime("%Y-%m-%d %H:%M:%S")}
                            if "started" in table else {})).map(
        lambda cell: printable(cell) if isinstance(cell, str) else cell).rename(columns=printable)
    if arguments.columns is None and not arguments.all_columns:
        print(_fitting(table))
        return 0
    print(_table_text(table))
    return 0


TABLE_WIDTH = 100  # a terminal's width, with room to spare
NAME_CHARS = 24  # of a run's name, in the table that fits TABLE_WIDTH (the id names it anyway)
# The table that fits: these first, then the settings that differ between the runs listed,
# the tags, the settings they share, then these, as long as each still fits.
FIRST_COLUMNS = ("id", "name", "requests", "errors", "rps", "p50_ms", "p99_ms")
LATER_COLUMNS = ("p99_9_ms", "max_ms", "mean_ms", MEASURED_COLUMN, "started")


def _chosen_runs(infos: list[RecordInfo], arguments: argparse.Namespace) -> list[RecordInfo]:
    chosen = [info for info in infos if set(arguments.tag) <= set(info.tags)
              and (arguments.name is None or fnmatch.fnmatchcase(info.name, arguments.name))]
    return chosen if arguments.last is None else chosen[-arguments.last:]


def _run_item(info: RecordInfo) -> dict[str, Any]:
    """A run as ``runs --json`` lists it: who it is, its settings, and its figures under the
    keys ``bench --json`` uses (``latency_ms.p99``)."""
    summary = info.summary
    return {"id": info.id, "name": info.name, "started_at": info.started_at, "tags": list(info.tags),
            "notes": info.notes, "settings": info.settings,
            "measured_duration_seconds": info.measured_seconds, "requests": summary.requests,
            "succeeded": summary.succeeded, "rps": None if math.isnan(summary.rps) else summary.rps,
            "errors": dict(summary.errors), "status_codes": dict(summary.status_codes),
            **latency_document(summary.latency)}


def _named_columns(text: str, table: pd.DataFrame) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in table.columns]
    if unknown or not names:
        raise ConfigError("columns", f"{unknown[0] if unknown else text!r} is not a column; "
                          f"columns: {', '.join(table.columns)}")
    return names


def _fitting(table: pd.DataFrame) -> str:
    """The table with as many columns as fit TABLE_WIDTH, the most telling first."""
    fixed = {"id", "name", "started", "tags", MEASURED_COLUMN, *report.listing_columns()}
    settings = [column for column in table.columns if column not in fixed]
    differing = [column for column in settings if table[column].astype(str).nunique() > 1]
    shared = [column for column in settings if column not in differing]
    table = table.assign(name=table["name"].map(_shortened))
    chosen = [column for column in FIRST_COLUMNS if column in table]
    for column in (*differing, "tags", *shared, *LATER_COLUMNS):
        wider = [*chosen, column]
        if column in table and _width(_table_text(table[wider])) <= TABLE_WIDTH:
            chosen = wider
    return _table_text(table[[column for column in table.columns if column in chosen]])


def _shortened(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def _width(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _table_text(table: pd.DataFrame) -> str:
    with pd.option_context("display.width", None, "display.max_columns", None,
                           "display.float_format", _figure):
        return str(table.to_string(index=False))


@_reports_store_problems
def run_show(arguments: argparse.Namespace) -> int:
    record = _store(arguments).load(arguments.reference)
    if arguments.json:
        print(json.dumps(record.to_json_dict()))
        return 0
    print(describe(record))
    if arguments.timeline:
        print("\ntimeline (per interval, by completion time):")
        # cell by cell: a percentile column holds numbers and marks ("too few") side by side
        print(report.timeline_view(record.timeline()).map(_cell).to_string(index=False))
    return 0


def check_output(output: str) -> Path:
    """A file to write, checked before anything is loaded or drawn: its folder must exist."""
    path = Path(output)
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError("output", f"cannot write {output}: the folder {folder} {what}")
    if path.is_dir():
        raise ConfigError("output", f"{output} is a folder; give a file name")
    return path


def _export_format(arguments: argparse.Namespace) -> str:
    if arguments.format is not None:
        return str(arguments.format)
    if arguments.output in (None, "-"):
        raise ConfigError("format", "give --format (or a -o file whose suffix names one: "
                          + ", ".join(f".{name}" for name in FORMATS) + ")")
    found = format_for_path(arguments.output)
    if found is None:
        raise ConfigError("output", f"unknown suffix {Path(arguments.output).suffix or '(none)'!r} "
                          f"in {arguments.output}; use one of "
                          + ", ".join(f".{name}" for name in FORMATS) + " or give --format")
    return found


@_reports_store_problems
def run_export(arguments: argparse.Namespace) -> int:
    format = _export_format(arguments)
    if arguments.output == "-" and format == "parquet":
        raise ConfigError("output", "parquet is binary; give a file with -o")
    target = None if arguments.output in (None, "-") else check_output(arguments.output)
    record = _store(arguments).load(arguments.reference)
    if arguments.output == "-":
        sys.stdout.write(_text_export(record, format, arguments.metric, arguments.interval_s))
        return 0
    try:
        path = export(record, format, target, metric=arguments.metric, interval_s=arguments.interval_s)
    except OSError as error:
        raise ConfigError("output", f"cannot write {error.filename or target}: {error.strerror}") from None
    print(printable(f"wrote {path}"))
    return 0


def _text_export(record: Record, format: str, metric: str, interval_s: float | None) -> str:
    if format == "hlog":
        return hlog_text(record, interval_s)
    if format == "csv":
        return str(to_dataframe(record).to_csv(index=False))
    if format == "json":
        return json_text(record)
    return hgrm_text(record, metric)


@_reports_store_problems
def run_plot(arguments: argparse.Namespace) -> int:
    # Figures are drawn without pyplot, so no GUI backend is ever picked; this only guards
    # against a library that imports pyplot on its own in a display-less shell.
    os.environ.setdefault("MPLBACKEND", "Agg")
    from lab.records import plots

    target = None if arguments.output is None else check_output(arguments.output)
    if target is not None and not plots.picture_format(target):
        raise ConfigError("output", f"unknown picture format {target.suffix or '(none)'!r} in "
                          f"{arguments.output}; use .png, .svg or .pdf")
    records = _store(arguments).load_many(arguments.runs)
    if target is None:
        more = f"-and-{len(records) - 1}-more" if len(records) > 1 else ""
        target = Path(f"{file_stem(records[0])}{more}-{arguments.kind}.png")
    options: dict[str, Any] = {} if arguments.kind == "timeline" else {"metric": arguments.metric}
    figure = plots.plot(records, arguments.kind, **options)
    try:
        written = plots.save_figure(figure, target)
    except OSError as error:
        raise ConfigError("output", f"cannot write {target}: {error.strerror}") from None
    print(printable(f"wrote {written}"))
    return 0


@_reports_store_problems
def run_compare(arguments: argparse.Namespace) -> int:
    table = compare_runs(_store(arguments), arguments.runs, baseline=arguments.baseline)
    table = table.rename(columns=printable, index=printable)
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(table.map(_cell).to_string())
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _figure(value)
    return "-" if value is None else printable(value)


def _figure(value: float) -> str:
    """Four significant digits, but no exponent for large rates (33144, not 3.314e+04)."""
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


# --- the text report ------------------------------------------------------------------------

def describe(record: Record) -> str:
    """A human-readable report of one record, in the spirit of wrk's summary; every figure is
    the record's one summary, the same the run printed."""
    environment = record.environment
    lines = [printable(f"run {record.id}  {record.name!r}  started {environment.started_at}")]
    if record.notes:
        lines.append(f"notes: {printable(record.notes)}")
    if record.tags:
        lines.append(f"tags: {printable(', '.join(record.tags))}")
    lines.append("load:   " + _settings_line(record.load_spec))
    server = _settings_line(record.server_config) if record.server_config else "(not recorded)"
    lines.append("server: " + server)
    if record.markers:  # changes made while the run went on (the panel's live tuning)
        lines.append("changed during the run: " + printable(", ".join(
            f"{marker.label} at {marker.t_s:.2f} s" for marker in record.markers)))
    git = (environment.git_commit or "unknown")[:12]
    if environment.git_dirty:
        git += " (uncommitted changes)"
    lines.append(printable(
        f"environment: Python {environment.python} ({environment.python_implementation}), "
        f"lab {environment.lab}, uvloop {environment.uvloop}, httptools {environment.httptools}, "
        f"event loop {environment.event_loop or 'unknown'}; {environment.os} {environment.kernel} "
        f"{environment.machine}; {environment.cpu_model}; {environment.cpu_count} CPUs "
        f"({environment.usable_cpus} usable); git {git}"))
    lines.append("")
    lines.extend(printable(line) for line in report.describe_lines(
        record.summary, record.load_spec, record.run_outcome()))
    if record.hiccups:  # how late the loops themselves woke (the hiccup meter, issue 28)
        lines.append("")
        lines.extend(describe_hiccups(hiccups) for hiccups in record.hiccups)
    return "\n".join(lines)


def _settings_line(settings: dict[str, Any]) -> str:
    return printable(" ".join(f"{key}={value}" for key, value in settings.items()))

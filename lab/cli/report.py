"""``python -m lab report RUN [RUN...] -o report.html``: saved runs as one HTML file to share;
``python -m lab report SWEEP_ID``: a saved sweep's (its verdicts, rounds and runs).

The file holds everything a reader needs to judge the runs (lab/records/html_report.py) and
reaches for nothing outside itself: it opens offline, mailed or attached to a ticket.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# the records commands' own helpers: one way to name the data folder and report its problems
from lab.cli.records import RUN_HELP, _add_data_dir, _reports_store_problems, _store, check_output
from lab.cli.text import printable
from lab.errors import ConfigError, RecordNotFound
from lab.records.files import write_text_atomically
from lab.records.store import looks_like_sweep_id

HTML_SUFFIXES = (".html", ".htm")
DEFAULT_OUTPUT = "report.html"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report", help="saved runs as one self-contained HTML file to share",
        description="Write one HTML file of one saved run, or several compared: verdicts, what "
                    "differed, the comparison table, corrected and uncorrected latency, plots, "
                    "every setting, the environment and the samples. It needs no network to open.")
    _add_data_dir(parser)
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help=RUN_HELP + "; or a sweep's id (sweep-...), reported on its own")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="FILE",
                        help=f"the .html file to write [default: {DEFAULT_OUTPUT}]")
    parser.add_argument("--baseline", metavar="RUN", help="ratios against this run [default: the first]")
    parser.add_argument("--title", default=None, help="the report's title [default: the runs' names]")
    parser.set_defaults(run=run_report)


def html_output(output: str) -> Path:
    """The file to write, checked before any run is loaded: an existing folder, an HTML name."""
    path = check_output(output)
    if path.suffix.lower() not in HTML_SUFFIXES:
        raise ConfigError("output", f"{output}: a report is HTML; give a name ending in .html")
    return path


@_reports_store_problems
def run_report(arguments: argparse.Namespace) -> int:
    # drawn without pyplot; this only guards against a library importing pyplot on its own
    os.environ.setdefault("MPLBACKEND", "Agg")
    from lab.experiments.report import sweep_report_html
    from lab.records.compare import runs_to_compare
    from lab.records.html_report import report_html

    target = html_output(arguments.output)
    store = _store(arguments)
    sweeps = [reference for reference in arguments.runs if looks_like_sweep_id(reference)]
    if sweeps:
        if len(arguments.runs) > 1 or arguments.baseline is not None:
            raise ConfigError("runs", f"{sweeps[0]} is a sweep: report it on its own "
                              "(its baseline is the sweep's)")
        document = store.load_sweep(sweeps[0])
        if document is None:
            raise RecordNotFound(f"no sweep {sweeps[0]} in {store.path} (a sweep keeps its "
                                 "document there when it saves its runs)")
        page = sweep_report_html(document, store=store, title=arguments.title)
        what = f"sweep {sweeps[0]}"
    else:
        records, baseline = runs_to_compare(store, arguments.runs, baseline=arguments.baseline)
        page = report_html(records, baseline=baseline, title=arguments.title)
        what = f"{len(records)} run{'s' if len(records) > 1 else ''}"
    try:
        write_text_atomically(target, page)
    except OSError as error:
        raise ConfigError("output", f"cannot write {target}: {error.strerror}") from None
    print(printable(f"wrote {target} ({target.stat().st_size / 1024:,.0f} KiB, {what})"))
    return 0

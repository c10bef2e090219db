"""``python -m lab report RUN [RUN...] -o report.html``: saved runs as one HTML file to share.

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
from lab.errors import ConfigError

HTML_SUFFIXES = (".html", ".htm")
DEFAULT_OUTPUT = "report.html"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report", help="saved runs as one self-contained HTML file to share",
        description="Write one HTML file of one saved run, or several compared: verdicts, what "
                    "differed, the comparison table, corrected and uncorrected latency, plots, "
                    "every setting, the environment and the samples. It needs no network to open.")
    _add_data_dir(parser)
    parser.add_argument("runs", nargs="+", metavar="RUN", help=RUN_HELP)
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
    from lab.records.compare import runs_to_compare
    from lab.records.html_report import write_report

    target = html_output(arguments.output)
    records, baseline = runs_to_compare(_store(arguments), arguments.runs, baseline=arguments.baseline)
    try:
        written = write_report(records, target, baseline=baseline, title=arguments.title)
    except OSError as error:
        raise ConfigError("output", f"cannot write {target}: {error.strerror}") from None
    size = written.stat().st_size
    print(printable(f"wrote {written} ({size / 1024:,.0f} KiB, {len(records)} "
                    f"run{'s' if len(records) > 1 else ''})"))
    return 0

"""``python -m lab bench URL``: load a server and print what wrk (or wrk2) users expect.

Every flag but the few below is a knob of :class:`~lab.engine.spec.LoadSpec`. ``--rate`` selects
the open loop. ``--json`` prints one JSON object (``LoadResult.to_json_dict``) and nothing else
on stdout; progress goes to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from lab.engine.report import format_report
from lab.engine.spec import LoadSpec
from lab.errors import ConfigError
from lab.loadgen import LoadProgress, run_load
from lab.options import add_arguments, from_arguments
from lab.records.experiment import save_result
from lab.records.store import RecordStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench", help="load a server: closed loop like wrk, or open loop (--rate) like wrk2",
        description=__doc__.splitlines()[0])
    parser.add_argument("url", metavar="URL", help="target, e.g. http://127.0.0.1:8080/fast")
    add_arguments(parser, LoadSpec)
    extra = parser.add_argument_group("request and output")
    extra.add_argument("--header", "-H", action="append", default=[], metavar="'NAME: VALUE'",
                       help="add a request header (repeatable)")
    extra.add_argument("--path", action="append", default=[], metavar="PATH",
                       help="request this path instead of the URL's; repeat to take several in turn")
    extra.add_argument("--json", action="store_true", help="print one JSON object")
    extra.add_argument("--calibrate", action="store_true",
                       help="first measure the generator's own added latency, and report it")
    keep = parser.add_argument_group("keeping the run")
    keep.add_argument("--save", action="store_true",
                      help="save the run as an experiment record (see `python -m lab runs`)")
    keep.add_argument("--name", default="bench", help="the record's name (with --save)")
    keep.add_argument("--data-dir", default=None, metavar="DIR",
                      help="where records go (default: $LAB_DATA_DIR or data/)")
    parser.set_defaults(run=run)


def spec_from_arguments(arguments: argparse.Namespace) -> LoadSpec:
    extra: dict[str, Any] = {"url": arguments.url}
    if getattr(arguments, "rate", None) is not None:
        extra["mode"] = "open"
    if arguments.header:
        extra["headers"] = tuple(_split_header(text) for text in arguments.header)
    if arguments.path:
        extra["paths"] = tuple(arguments.path)
    return from_arguments(LoadSpec, arguments, **extra)


def _split_header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise ConfigError("headers", f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def _show_progress(progress: LoadProgress) -> None:
    print(f"\r  {progress}   ", end="", file=sys.stderr, flush=True)


def run(arguments: argparse.Namespace) -> int:
    spec = spec_from_arguments(arguments)
    interactive = sys.stderr.isatty()
    result = run_load(spec, calibrate=arguments.calibrate,
                      on_progress=_show_progress if interactive else None)
    if interactive:
        print(file=sys.stderr)
    if arguments.json:
        print(json.dumps(_json_safe(result.to_json_dict())))
    else:
        print(format_report(result))
    if arguments.save:
        record = save_result(result, name=arguments.name, store=RecordStore(arguments.data_dir))
        # With --json, stdout holds exactly one JSON object: the note goes to stderr.
        print(f"saved run {record.id} ({record.name})", file=sys.stderr if arguments.json else sys.stdout)
    return 1 if result.problems and result.requests == 0 else 0


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: figures with no samples behind them become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value

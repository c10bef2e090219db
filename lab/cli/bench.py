"""``python -m lab bench URL``: load a server and print what wrk (or wrk2) users expect.

Every flag but the few below is a knob of :class:`~lab.engine.spec.LoadSpec`. ``--rate`` selects
the open loop. ``--json`` prints one JSON object (``LoadResult.to_json_dict``) and nothing else
on stdout; a progress line goes to stderr when it is a terminal and the run lasts over a second.
Everything a user can get wrong (flags, the record's name, where it is saved) is checked
before the run starts, so a mistake never costs a finished run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from lab.cli.text import printable
from lab.engine.report import format_report
from lab.engine.run import follow_to_end
from lab.engine.spec import LoadSpec
from lab.errors import ConfigError
from lab.loadgen import STOP_WAIT_SECONDS, LoadProgress, start_load
from lab.options import add_arguments, from_arguments
from lab.records.experiment import save_result
from lab.records.record import check_name
from lab.records.store import RecordStore

EXIT_CODES = """\
exit codes:
  0  the run completed and every --threshold held
  1  a --threshold failed (each is printed with ✓ or ✗ and the measured value)
  2  a usage error: a bad flag or value, or nowhere to save; nothing was run
  3  no request succeeded (no 2xx/3xx answer); stderr says why in one line,
     e.g. "no answer: 40 connect_refused" or "every answer was 404"
  4  the run is incomplete: a generator worker crashed or was lost, the target
     stopped listening during the run (every connect refused for 3 s), or
     --calibrate failed; the figures cover only what the rest measured (stderr
     and the report say what went wrong)
  130  the run was stopped before its end (Ctrl-C or SIGTERM): the report covers
     what was measured until then, its outcome is "stopped", and a --save'd
     record keeps the measured duration beside the one asked
  1  is also what a failure to run at all returns (a Dask cluster that does not
     start, a server that will not listen), with one line on stderr

wrk's habits work: -c connections, -d duration (10s, 500ms), -t workers, -R rate,
--latency (the distribution is always printed); oha's and ab's -n requests.
"""

PROGRESS_AFTER_SECONDS = 1.0  # a run shorter than this needs no progress line
PROGRESS_INTERVAL_SECONDS = 0.25


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench", help="load a server: closed loop like wrk, or open loop (--rate) like wrk2",
        description="Load a server and print what wrk (or wrk2, with --rate) users expect.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", metavar="URL", help="target, e.g. http://127.0.0.1:8080/fast")
    add_arguments(parser, LoadSpec)
    extra = parser.add_argument_group("request and output")
    extra.add_argument("--header", "-H", dest="headers", action="append", default=[], metavar="'NAME: VALUE'",
                       help="add a request header (repeatable)")
    extra.add_argument("--path", action="append", default=[], metavar="PATH",
                       help="request this path instead of the URL's; repeat to take several in turn")
    extra.add_argument("--json", action="store_true", help="print one JSON object")
    # wrk prints its percentile table only with --latency; the lab always prints it, so a
    # command line copied from wrk must not be refused for asking.
    extra.add_argument("--latency", action="store_true",
                       help="accepted as wrk takes it: the latency distribution is always printed")
    extra.add_argument("--cluster", default=None, metavar="local:N|tcp://HOST:PORT",
                       help="run the generator on a Dask cluster: local:N starts N single-threaded "
                            "worker processes here; tcp://HOST:PORT uses a running scheduler")
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
    if getattr(arguments, "rate", None) is not None or getattr(arguments, "stages", None):
        extra["mode"] = "open"
    if arguments.headers:
        extra["headers"] = tuple(_split_header(text) for text in arguments.headers)
    if arguments.path:
        extra["paths"] = tuple(arguments.path)
    return from_arguments(LoadSpec, arguments, **extra)


def _split_header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise ConfigError("headers", f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def writable_store(directory: str | None) -> RecordStore:
    """The record store ``--save`` will write to, checked now: created if missing, and a file
    really made (and removed) in it. Permission bits alone do not say (root ignores them)."""
    store = RecordStore(directory)
    try:
        store.path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=store.path, prefix=".probe-"):
            pass
    except OSError as error:
        raise ConfigError("data_dir", f"cannot save records in {store.path}: {error.strerror}") from None
    return store


class ProgressLine:
    """One line on stderr, rewritten in place, once the run has lasted a second."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.shown = False

    def __call__(self, progress: LoadProgress) -> None:
        if time.monotonic() - self.began < PROGRESS_AFTER_SECONDS:
            return
        self.shown = True
        print(f"\r  {progress}\x1b[K", end="", file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self.shown:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM (a CI job cancelled, ``kill``) stop the run and keep what it
    measured: the report is printed and saved, the outcome is "stopped", the exit code 130.

    While the worker processes start, a signal is only noted (the run is stopped as soon as it
    exists): interrupting the start leaves processes half made and nothing reported. A SIGINT
    that was ignored when the process started (a job started in the background) stays ignored.
    """

    def __init__(self) -> None:
        self.received = False
        self._signals = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._signals.append(signal.SIGINT)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        with self._handling(self._note):
            yield

    @contextlib.contextmanager
    def interrupting(self) -> Iterator[None]:
        with self._handling(self._interrupt):
            yield

    @contextlib.contextmanager
    def _handling(self, handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
        previous = {number: signal.signal(number, handler) for number in self._signals}
        try:
            yield
        finally:
            for number, before in previous.items():
                signal.signal(number, before)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = True

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # follow_to_end stops the run and waits for what it measured


def run(arguments: argparse.Namespace) -> int:
    spec = spec_from_arguments(arguments)
    if arguments.cluster is not None:
        from lab.engine.cluster import parse_cluster

        parse_cluster(arguments.cluster)  # a bad value is a usage error before anything starts
    store = None
    if arguments.save:  # before the run: a bad name or folder must not cost a finished run
        name = check_name(arguments.name)
        store = writable_store(arguments.data_dir)
    progress = ProgressLine() if sys.stderr.isatty() else None
    stops = StopSignals()
    try:
        with stops.deferred():  # starting processes must not be cut halfway
            run_ = start_load(spec, calibrate=arguments.calibrate, cluster=arguments.cluster)
        if stops.received:
            run_.stop()
        with stops.interrupting():
            result = follow_to_end(run_, progress, PROGRESS_INTERVAL_SECONDS,
                                   stop_wait_seconds=STOP_WAIT_SECONDS + spec.timeout_seconds)
    finally:
        if progress is not None:
            progress.clear()
    if arguments.json:
        print(json.dumps(result.to_json_dict()))
    else:
        print(format_report(result))
    if store is not None:
        record = save_result(result, name=name, store=store)
        # With --json, stdout holds exactly one JSON object: the note goes to stderr.
        print(f"saved run {record.id} ({printable(record.name)})",
              file=sys.stderr if arguments.json else sys.stdout)
    outcome, reason = result.verdict()
    if reason is not None:
        print(f"lab: {reason}", file=sys.stderr)
    return int(outcome)

"""``python -m lab sweep|capacity``: experiments made of many runs.

``sweep PATH --knob NAME=V1,V2``: does a server knob change latency, really?

Each setting runs once per round (their order shuffled within each round) against the lab server
in its own process; each metric's ratio against the baseline (the first value of every knob) gets
a 95 % bootstrap interval and a paired rank test, and a verdict: ``slower``, ``faster`` or ``no detectable
effect``. Everything is checked before the first run; progress goes to stderr, and ``--json``
prints one JSON object on stdout.

``capacity URL --slo 'p99<20ms'``: the highest open-loop rate at which the SLO holds, found by
bracketing and bisection within a bounded time, each probe printed as it ends.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.cli.bench import writable_store
from lab.cli.records import check_output
from lab.cli.serve import add_emulate_flag
from lab.cli.text import printable
from lab.engine.spec import LoadSpec
from lab.errors import ConfigError
from lab.experiments.capacity import (
    DEFAULT_BUDGET_SECONDS,
    DEFAULT_MAX_RATE,
    DEFAULT_PRECISION,
    DEFAULT_START_RATE,
    CapacityResult,
    find_capacity,
)
from lab.experiments.effects import (
    DEFAULT_NOISE_BAND,
    FEWEST_ROUNDS_FOR_A_VERDICT,
    MINIMUM_ROUNDS,
    SIGNIFICANCE,
)
from lab.experiments.sweeps import (
    DEFAULT_METRICS,
    DEFAULT_WARMUP_SECONDS,
    SweepResult,
    label,
    parse_assignment,
    sweep,
)
from lab.measure.thresholds import Outcome
from lab.netpath.spec import PATH_KNOBS
from lab.options import parse_value

EPILOG = f"""\
exit codes:
  0  the sweep ran; each effect is printed with its verdict
  1  a run failed (no successful answer, the server did not start)
  2  a usage error (unknown knob, value out of range, fewer than {MINIMUM_ROUNDS} rounds); nothing ran

A verdict needs the interval outside the noise band and the paired rank test (Wilcoxon
signed-rank on each round's log ratio) below p {SIGNIFICANCE:g}; with fewer than
{FEWEST_ROUNDS_FOR_A_VERDICT} rounds it cannot get there, so 9 or more rounds are the useful minimum.
Values are written as on the `serve` flags: on/off, 64KiB, 500ms, none.
"""


def _load_flag(name: str) -> Callable[[str], Any]:
    """A LoadSpec value parsed as `bench` parses it (``500ms``, ``2s``)."""
    def parse(text: str) -> Any:
        return parse_value(LoadSpec, name, text)
    parse.__name__ = "value"
    return parse


def _share(text: str) -> float:
    """``5%`` or ``0.05``."""
    stripped = text.strip()
    return float(stripped.removesuffix("%")) / 100 if stripped.endswith("%") else float(stripped)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sweep", help="is a knob's effect real? interleaved rounds, a ratio with an interval",
        description="Does a server knob change latency, really? Interleaved rounds, a ratio "
                    "with a 95 % interval, a verdict.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="PATH", help="the request path, e.g. /fast or /work/1000")
    parser.add_argument("--knob", dest="knob", action="append", default=[], metavar="NAME=V1,V2",
                        help="a server knob, or a knob of the emulated path (delay, loss, rate, "
                        "...: delay=10ms,40ms), and the values to sweep (repeatable: all "
                        "combinations)")
    parser.add_argument("--set", dest="set", action="append", default=[], metavar="NAME=V",
                        help="a server or path knob held at one value for every run (repeatable)")
    parser.add_argument("--rounds", type=int, default=9, metavar="N",
                        help=f"rounds; each runs every setting once [at least {MINIMUM_ROUNDS}; default: 9]")
    parser.add_argument("--duration", "-d", dest="duration_seconds", type=_load_flag("duration_seconds"),
                        default=1.0, metavar="S", help="measured time of each run [default: 1s]")
    parser.add_argument("--warmup", dest="warmup_seconds", type=_load_flag("warmup_seconds"),
                        default=None, metavar="S",
                        help=f"unmeasured start of each run [default: {DEFAULT_WARMUP_SECONDS:g}s; "
                             "none with --stage]")
    parser.add_argument("--connections", "-c", dest="connections", type=int, default=10, metavar="N",
                        help="connections of each run [default: 10]")
    parser.add_argument("--rate", "-R", dest="rate", type=_load_flag("rate"), default=None, metavar="R",
                        help="open loop at this many requests/s [default: closed loop]")
    parser.add_argument("--stage", dest="stages", action="append", default=[],
                        metavar="DURATION:RATE", help="each run is an open loop in these rate stages "
                        "(repeatable, in order), e.g. 1s:500 or 2s:100-1000 for a ramp; "
                        "their total is the run's duration")
    parser.add_argument("--metric", dest="metric", action="append", default=None,
                        metavar="NAME", help="latency figure to compare, e.g. p50, p99, mean "
                        f"(repeatable) [default: {', '.join(DEFAULT_METRICS)}]")
    parser.add_argument("--noise-band", dest="noise_band", type=_share, default=DEFAULT_NOISE_BAND,
                        metavar="SHARE", help="ratios within 1 ± this are noise [default: 5%%]")
    add_emulate_flag(parser, "run the server behind an emulated network path for every run")
    parser.add_argument("--to", default=None, metavar="HOST:PORT",
                        help="run against a server on this machine that the lab did not start, "
                        "behind an emulated path whose knobs (--knob delay=10ms,40ms) are swept")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round order [default: random]")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="also draw the effects as a forest plot (.png, .svg or .pdf)")
    _add_report_flag(parser, "the sweep")
    parser.add_argument("--no-save", dest="save", action="store_false",
                        help="do not keep the runs as records")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="where the runs' records go (default: $LAB_DATA_DIR or data/)")
    parser.set_defaults(run=run)
    _register_capacity(subparsers)


def _add_report_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--report", metavar="FILE", default=None,
                        help=f"also write {what} as one self-contained HTML file to share (.html)")


def _report_output(arguments: argparse.Namespace) -> None:
    """--report's file, checked before anything runs: a search or sweep is long to lose."""
    if arguments.report is not None:
        from lab.cli.report import html_output

        try:
            html_output(arguments.report)
        except ConfigError as error:
            raise ConfigError("report", error.message) from None


def _write_report(path: str, write: Callable[[str], Path]) -> None:
    try:
        written = write(path)
    except OSError as error:
        raise ConfigError("report", f"cannot write {path}: {error.strerror}") from None
    print(printable(f"wrote {written}"), file=sys.stderr)


def _assignments(option: str, texts: list[str]) -> dict[str, list[str]]:
    assignments: dict[str, list[str]] = {}
    for text in texts:
        name, values = parse_assignment(option, text)
        if name in assignments:
            raise ConfigError(option, f"{name} is given twice")
        assignments[name] = values
    return assignments


def _fixed(texts: list[str]) -> dict[str, str]:
    fixed = {}
    for name, values in _assignments("set", texts).items():
        if len(values) != 1:
            raise ConfigError("set", f"{name}: one value (sweep several with --knob)")
        fixed[name] = values[0]
    return fixed


def run(arguments: argparse.Namespace) -> int:
    fixed = _fixed(arguments.set)
    if arguments.plot is not None:
        from lab.records.plots import picture_format

        if picture_format(arguments.plot) is None:  # checked now, not after the sweep
            raise ConfigError("plot", f"{arguments.plot}: use .png, .svg or .pdf")
        try:
            check_output(arguments.plot)
        except ConfigError as error:
            raise ConfigError("plot", error.message) from None
    _report_output(arguments)
    store = writable_store(arguments.data_dir) if arguments.save else None
    result = sweep(arguments.path, knobs=_assignments("knob", arguments.knob), fixed=fixed,
                   rounds=arguments.rounds, duration_seconds=arguments.duration_seconds,
                   warmup_seconds=arguments.warmup_seconds, connections=arguments.connections,
                   rate=arguments.rate, stages=arguments.stages, seed=arguments.seed,
                   metrics=tuple(arguments.metric or DEFAULT_METRICS),
                   noise_band=arguments.noise_band, network_path=arguments.emulate,
                   to=arguments.to, store=store,
                   on_progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    if arguments.plot is not None:
        from lab.records.plots import save_figure

        save_figure(result.forest_plot(), arguments.plot)
    if arguments.report is not None:
        from lab.experiments.report import write_sweep_report

        _write_report(arguments.report, lambda path: write_sweep_report(result, path))
    if arguments.json:
        print(json.dumps(result.to_json_dict(), indent=2, default=str))
    else:
        print(describe(result))
    return 0


def describe(result: SweepResult) -> str:
    plan = result.plan
    against = f" against {plan.target[0]}:{plan.target[1]}" if plan.target is not None else ""
    lines = [f"sweep {result.sweep_id}{against}: {plan.rounds} rounds of {len(plan.settings)} "
             f"settings, {plan.duration_seconds:g} s each, seed {plan.seed}",
             f"baseline: {label(plan.settings[0])}"]
    if plan.network_path is not None:
        swept = [name for name in plan.knobs if name in PATH_KNOBS]
        varied = f", {' and '.join(swept)} as swept" if swept else ""
        lines.append(f"behind an emulated path: {plan.network_path} (RTT {plan.network_path.rtt_ms:g} ms)"
                     f"{varied}")
    for effect in result.effects:
        lines.append(printable(
            f"  {label(effect.setting)}  {effect.metric}: ×{effect.ratio:.3g} "
            f"(95 % interval {effect.ci_low:.3g} to {effect.ci_high:.3g}, p={effect.p_value:.2g})  "
            f"{effect.verdict}"
            + ("  (within the noise band)" if effect.within_noise_band else "")))
    if plan.rounds < FEWEST_ROUNDS_FOR_A_VERDICT:
        lines.append(f"with {plan.rounds} rounds the paired rank test cannot reach p < {SIGNIFICANCE:g}: "
                     f"no verdict can name an effect (--rounds {FEWEST_ROUNDS_FOR_A_VERDICT} or more)")
    if result.saved:
        lines.append(f"each run is a record tagged {result.sweep_id} (python -m lab runs)")
    return "\n".join(lines)


# --- capacity -------------------------------------------------------------------------------

CAPACITY_EPILOG = """\
exit codes:
  0  a rate was found at which every --slo held
  1  the SLO failed even at the lowest rate tried
  2  a usage error (an SLO that does not parse, a bad rate); nothing ran
  3  the target could not be reached: a probe, confirmed, got no answer and every connect
     failed (nothing listening, or the server died during the search)
"""


def _register_capacity(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "capacity", help="the highest request rate at which an SLO such as p99<20ms holds",
        description="Find the highest open-loop rate at which every --slo holds: the rate "
                    "doubles until a probe fails, then the bracket is halved.",
        epilog=CAPACITY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", metavar="URL", help="target, e.g. http://127.0.0.1:8080/work/1000")
    parser.add_argument("--slo", dest="thresholds", action="append", default=[], metavar="EXPR",
                        help="a condition each probe must meet, e.g. p99<20ms (repeatable)")
    parser.add_argument("--connections", "-c", dest="connections", type=int, default=50, metavar="N",
                        help="connection pool of each probe [default: 50]")
    parser.add_argument("--duration", "-d", dest="duration_seconds", type=_load_flag("duration_seconds"),
                        default=2.0, metavar="S", help="length of each probe [default: 2s]")
    parser.add_argument("--start-rate", dest="start_rate", type=float, default=DEFAULT_START_RATE,
                        metavar="R", help=f"first rate tried [default: {DEFAULT_START_RATE:g}]")
    parser.add_argument("--max-rate", dest="max_rate", type=float, default=DEFAULT_MAX_RATE,
                        metavar="R", help=f"highest rate tried [default: {DEFAULT_MAX_RATE:g}]")
    parser.add_argument("--precision", type=_share, default=DEFAULT_PRECISION, metavar="SHARE",
                        help="stop when the bracket is this narrow [default: 5%%]")
    parser.add_argument("--budget", dest="budget_seconds", type=_load_flag("duration_seconds"),
                        default=DEFAULT_BUDGET_SECONDS, metavar="S",
                        help=f"most time the search may take [default: {DEFAULT_BUDGET_SECONDS:g}s]")
    parser.add_argument("--allow-remote", dest="allow_remote", action="store_true",
                        help="allow a target outside 127.0.0.0/8 and ::1 (you must own it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    _add_report_flag(parser, "the search")
    parser.set_defaults(run=run_capacity)


def run_capacity(arguments: argparse.Namespace) -> int:
    _report_output(arguments)
    result = find_capacity(arguments.url, slo=arguments.thresholds, connections=arguments.connections,
                           duration_seconds=arguments.duration_seconds,
                           start_rate=arguments.start_rate, max_rate=arguments.max_rate,
                           precision=arguments.precision, budget_seconds=arguments.budget_seconds,
                           allow_remote=arguments.allow_remote,
                           on_progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    if arguments.json:
        print(json.dumps(result.to_json_dict(), indent=2, default=str))
    elif result.no_success is None:
        print(describe_capacity(result))
    if arguments.report is not None:
        from lab.experiments.report import write_capacity_report

        _write_report(arguments.report, lambda path: write_capacity_report(result, path))
    if result.no_success is not None:
        print(printable(f"lab: {result.no_success}"), file=sys.stderr)
        return int(Outcome.NO_SUCCESS)
    return 0 if result.capacity_rps > 0 else 1


def describe_capacity(result: CapacityResult) -> str:
    slo = " and ".join(result.slo)
    low, high = result.bracket
    if result.capacity_rps == 0:
        return printable(f"{slo} failed at every rate tried, down to {result.probes[-1].rate:g} requests/s")
    above = f"fails at {high:,.0f}" if high is not None else "no rate tried failed"
    budget = " (time budget spent)" if result.stopped_by_budget else ""
    behind = f", behind the emulated path {result.network_path}" if result.network_path else ""
    return printable(f"capacity: {low:,.0f} requests/s with {slo} ({above}){budget}{behind}")

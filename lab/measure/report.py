"""A run rendered for people: bench's text, ``show``'s text and tables, the panel's table and
headline, and the rounding every table of figures uses.

Every view lists its figures from the catalogue (:mod:`lab.measure.figures`) and names them
by its one rule, and prints the run's one :class:`~lab.measure.summary.RunSummary`, never a
figure of its own. Latencies are all in milliseconds (one unit per view: a column that
switches between us, ms and s hides a factor of a thousand from a quick reader). pandas is
imported only by the tables, so bench's text does not pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lab.measure import figures
from lab.measure.run import RunOutcome, threshold_checks, tls_document
from lab.measure.stats import LatencySummary
from lab.measure.summary import Goodput, RunSummary, describe_counts, timeline_unsupported

if TYPE_CHECKING:
    import pandas as pd

COLUMN = 10  # bench's columns, as wide as wrk's


# --- rounding: the same figure, rounded as each kind of view reads it ------------------------

def format_ms(milliseconds: float | str) -> str:
    """Three decimals; ``-`` where nothing was measured, a mark (figures.UNSUPPORTED) as it is."""
    if isinstance(milliseconds, str):
        return milliseconds
    return "-" if math.isnan(milliseconds) else f"{milliseconds:.3f}"


def format_bytes(count: float) -> str:
    if math.isnan(count):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.2f}{unit}"
        count /= 1024
    return f"{count:.2f}GB"


SIGNIFICANT_DIGITS = 4  # 0.2051 ms, 55.11 ms, 203.5 ms: HdrHistogram keeps 3, one more to spare
MISSING = "—"  # a figure with nothing measured behind it


def format_figure(value: Any) -> str:
    """A figure as a table shows it: counts whole (``61,459``), rates above 1000 whole
    (``20,485``), other figures to four significant digits, ``—`` where nothing was measured."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return MISSING
    if abs(value) >= 10 ** (SIGNIFICANT_DIGITS - 1):
        return f"{value:,.0f}"
    return f"{value:.{SIGNIFICANT_DIGITS}g}"


def format_ratio(value: float) -> str:
    """``×0.98``, ``×1,910``: a ratio to the baseline, to three significant digits and never
    in exponent notation (``×1.91e+03`` reads as a typo); empty when undefined."""
    if math.isnan(value):
        return ""
    return f"×{value:,.0f}" if abs(value) >= 1000 else f"×{value:.3g}"


# --- bench: a run as wrk prints it -----------------------------------------------------------

def format_run(summary: RunSummary, load_spec: Mapping[str, Any], outcome: RunOutcome) -> str:
    """The report of a run from its summary, its load settings and what happened to it."""
    lines = [*_heading(load_spec), *_latency_lines(summary), *_count_lines(summary, outcome)]
    lines.append(f"Requests/sec: {summary.rps:>12,.2f}")
    if summary.goodput is not None:
        lines.extend(_goodput_lines(summary.goodput))
    if summary.open_loop:
        lines.extend(_rate_lines(summary))
    per_second = summary.bytes_read / summary.duration_s if summary.duration_s > 0 else float("nan")
    lines.append(f"Transfer/sec: {format_bytes(per_second):>12}")
    checks = threshold_checks(load_spec, summary)
    if checks:
        lines.append("Thresholds:")
        lines.extend(f"  {check.describe()}" for check in checks)
    if outcome.tls is not None:
        lines.append(_tls_line(outcome.tls))
    if outcome.calibration is not None:
        c = outcome.calibration
        lines.append(f"Generator's own latency (calibration, {c['requests']} requests): "
                     f"+{c['added_p50_us']:.1f}us p50, +{c['added_p99_us']:.1f}us p99 over a bare "
                     f"socket loop ({c['baseline_p50_us']:.1f}us / {c['baseline_p99_us']:.1f}us)")
    if outcome.cluster is not None:
        lines.append(f"Dask cluster {outcome.cluster['address']}:")
        lines.extend(f"  {worker['worker']}: {worker['requests']:,} requests"
                     + (" (lost during the run)" if worker["lost"] else "")
                     for worker in outcome.cluster["per_worker"])
    lines.extend(f"Problem: {problem}" for problem in outcome.problems)
    return "\n".join(lines)


def _goodput_lines(goodput: Goodput) -> list[str]:
    """Requests apart from attempts: what retries added, and what the callers got."""
    within = "" if goodput.deadline_ms is None else f" within their {goodput.deadline_ms:g} ms deadline"
    return [f"Goodput/sec: {goodput.goodput:>13,.2f}   {goodput.good:,} of {goodput.requests:,} "
            f"requests answered{within} ({goodput.good_share * 100:.1f} %)",
            f"Attempts: {goodput.attempts:,} = {goodput.requests:,} requests + {goodput.retries:,} "
            f"retries (retries {goodput.retry_share * 100:.1f} % of the load)"]


def _tls_line(counts: Mapping[str, Any]) -> str:
    """What the run's TLS handshakes agreed on, as ``tls_document`` says it in ``--json``."""
    tls = tls_document(counts)
    line = f"TLS: {tls['handshakes']:,} handshakes"
    if tls["version"] is not None:
        line += f", {tls['version']} {tls['cipher']}, {tls['resumed']:,} resumed"
        if tls["resumed_share"] is not None:
            line += f" ({tls['resumed_share'] * 100:.0f} %)"
    if tls["failures"]:
        line += "; failed: " + describe_counts(tls["failures"])
    return line


def _heading(spec: Mapping[str, Any]) -> list[str]:
    workers, connections = spec.get("workers", 1), spec.get("connections", "?")
    rate = spec.get("rate")
    stages = spec.get("stages") or ()
    if spec.get("mode") == "open" and stages:
        model = f"open loop in rate stages {', '.join(stages)}"
    else:
        model = f"open loop at {rate:g} req/s" if spec.get("mode") == "open" and rate else "closed loop"
    if spec.get("think_ms"):
        model += f", each connection thinking {spec['think_ms']:g} ms on average between requests"
    warmup = spec.get("warmup_seconds") or 0
    duration = f"{spec.get('duration_seconds', 0):g}s"
    budget = spec.get("max_requests")
    # Whichever comes first ends the run: say both when there are both.
    bound = f"up to {budget:,} requests ({duration} at most)" if budget else f"{duration} test"
    return [
        f"Running {bound} @ {spec.get('url')}" + (f" (after {warmup:g}s warm-up)" if warmup else ""),
        f"  {workers} worker{'s' if workers != 1 else ''} and {connections} "
        f"connection{'s' if connections != 1 else ''}, {model}"
        + ("" if spec.get("keepalive", True) else ", a new connection per request"),
    ]


def _latency_line(label: str, summary: LatencySummary) -> str:
    return (f"    {label:<9}{format_ms(summary.mean):>{COLUMN}}{format_ms(summary.stdev):>{COLUMN}}"
            f"{format_ms(summary.max):>{COLUMN}}")


def _latency_lines(summary: RunSummary) -> list[str]:
    corrected = summary.uncorrected
    lines = [f"  {'Latency':<9}{'Avg ms':>{COLUMN}}{'Stdev ms':>{COLUMN}}{'Max ms':>{COLUMN}}"]
    if corrected is not None:
        lines.append(_latency_line("Corrected", summary.latency))
        lines.append(_latency_line("Uncorr.", corrected))
    else:
        lines.append(_latency_line("Latency", summary.latency))
    lines.append(_latency_line("TTFB", summary.ttfb))
    if summary.connect.count:  # a run whose connections all opened in its warm-up has none
        lines.append(_latency_line("Connect", summary.connect))
    if summary.tls.count:  # the same connections' TLS handshakes
        lines.append(_latency_line("TLS", summary.tls))
    lines.append("  Latency Distribution (ms)" + ("   corrected  uncorrected" if corrected else ""))
    # wrk --latency prints 50/75/90/99; every listed percentile and the max is where latency
    # hides. A percentile is written as wrk writes it (99.9%), beside its max.
    for figure in (*figures.percentiles(), figures.MAX):
        label = figure.label if figure.percent is None else f"{figure.percent:g}%"
        line = f"    {label:>7}  {format_ms(figure.shown(summary.latency)):>{COLUMN}}"
        if corrected is not None:
            line += f"  {format_ms(figure.shown(corrected)):>{COLUMN + 1}}"
        lines.append(line)
    note = figures.unsupported_note(summary.latency.count)
    if note:
        lines.append(f"  ({note})")
    return lines


def _count_lines(summary: RunSummary, outcome: RunOutcome) -> list[str]:
    lines = [f"  {summary.requests:,} requests in {summary.duration_s:.2f}s, "
             f"{format_bytes(summary.bytes_read)} read"]
    if summary.status_codes:
        lines.append("  Status codes:")
        for code, count in summary.status_codes.items():
            timing = summary.by_status[code]
            p50, p99 = (_with_unit(figures.percentile(key).shown(timing)) for key in ("p50", "p99"))
            lines.append(f"    {code}  {count:>12,}   p50 {p50}   p99 {p99}")
    if summary.errors:
        counts = ", ".join(f"{kind} {count:,}" for kind, count in sorted(summary.errors.items()))
        lines.append(f"  Errors: {counts}")
    if outcome.stopped_early:
        lines.append(f"  Stopped before its end, after {outcome.measured_seconds:.2f}s; "
                     f"{outcome.abandoned:,} requests in flight or queued were abandoned")
    return lines


def _with_unit(milliseconds: float | str) -> str:
    return milliseconds if isinstance(milliseconds, str) else f"{format_ms(milliseconds)} ms"


def _rate_lines(summary: RunSummary) -> list[str]:
    """The target beside what was achieved; in words when the rate was not kept."""
    late_share = summary.late_share if summary.late_share is not None else float("nan")
    target = f"{summary.target_rate:>12,.2f}" if summary.target_rate else f"{'the stages':>12}"
    lines = [f"Target rate:  {target}   late (>{summary.late_after_ms:g} ms): "
             f"{summary.late:,} ({late_share * 100:.1f} %)"]
    if summary.kept_up is False:
        asked = f"the {summary.target_rate:,.0f} asked for" if summary.target_rate else "the stages' rates"
        lines.append(
            f"  The target rate was not kept: {late_share * 100:.1f} % of requests were sent late "
            f"(more than {summary.late_after_ms:g} ms after their intended time); achieved "
            f"{summary.rps:,.0f} responses/s of {asked}.")
    return lines


# --- runs and compare: a run's row of figures ------------------------------------------------

def listing_columns() -> list[str]:
    """The ``runs`` listing's columns of figures: ``requests``, ``errors``, ``rps``, ``p99_ms``..."""
    return ["requests", "errors", "rps", *(figure.column for figure in figures.listing())]


def listing_row(summary: RunSummary) -> dict[str, float | int | str]:
    """A run's figures in the ``runs`` listing, by column name (figures.UNSUPPORTED for a
    percentile too few samples lie beyond)."""
    values = [summary.requests, summary.error_total, summary.rps,
              *(figure.shown(summary.latency) for figure in figures.listing())]
    return dict(zip(listing_columns(), values, strict=True))


def side_by_side_column(summary: RunSummary) -> dict[str, float | int | str]:
    """A run's figures as ``compare`` and the panel's session table put them side by side, by
    row heading (``p99 ms``); figures.UNSUPPORTED for a percentile too few samples lie beyond."""
    return {figure.heading: figure.shown(summary) for figure in figures.side_by_side()}


# --- show: a saved run's figures, as text ----------------------------------------------------

def describe_lines(summary: RunSummary, load_spec: Mapping[str, Any], outcome: RunOutcome) -> list[str]:
    """What ``show`` prints of a run's figures, a line per item (the caller makes each safe to
    print: a problem or a threshold may hold any text)."""
    lines = [f"{summary.requests} requests in {summary.duration_s:.3f} s, "
             f"{summary.rps:.1f} responses/s; {summary.succeeded} succeeded, "
             f"{summary.error_total} failed", _duration_line(load_spec, outcome)]
    if summary.status_codes:
        codes = ", ".join(f"{code} {count}" for code, count in summary.status_codes.items())
        lines.append(f"status codes: {codes}")
    if summary.errors:
        lines.append("errors: " + describe_counts(summary.errors))
    if summary.goodput is not None:
        lines.extend(_goodput_lines(summary.goodput))
    if summary.open_loop and summary.target_rate is not None:
        lines.append(_target_line(summary))
    if outcome.tls is not None:
        lines.append(_tls_line(outcome.tls))
    lines.append("")
    lines.extend(latency_table(summary).map(_three_decimals).to_string().splitlines())
    marked = sorted({distribution.count for distribution in _distributions(summary).values()
                     if figures.unsupported_keys(distribution.count)}, reverse=True)
    lines.extend(f"({figures.unsupported_note(count)})" for count in marked)
    shares = "   ".join(f"{share * 100:.2f} % under {threshold} ms"
                        for threshold, share in summary.share_under.items() if not math.isnan(share))
    if shares:
        lines.extend(["", shares])
    checks = threshold_checks(load_spec, summary)
    if checks:
        lines.extend(["", "thresholds: " + "   ".join(check.describe() for check in checks)])
    if summary.open_loop:
        lines.append("(latency is timed from each request's intended send, correcting for "
                     "coordinated omission; 'uncorrected' from the actual send)")
    lines.extend(f"problem: {problem}" for problem in outcome.problems)
    return lines


def _duration_line(load_spec: Mapping[str, Any], outcome: RunOutcome) -> str:
    """How long the load ran beside what was asked: a stopped run ran less."""
    asked = load_spec.get("duration_seconds")
    line = f"load offered for {outcome.measured_seconds:.3f} s"
    if isinstance(asked, (int, float)) and not isinstance(asked, bool):
        line += f" of the {asked:g} s asked"
    return line + (" -- stopped before its end" if outcome.stopped_early else "")


def _target_line(summary: RunSummary) -> str:
    late_share = summary.late_share if summary.late_share is not None else float("nan")
    line = (f"target rate {summary.target_rate:,.0f}/s, achieved {summary.rps:,.0f} responses/s; "
            f"{summary.late} requests ({late_share * 100:.1f} %) sent late")
    if summary.kept_up is False:
        line += " -- the target rate was not kept"
    return line


def latency_table(summary: RunSummary) -> pd.DataFrame:
    """Every figure of each latency distribution of a run, one column per distribution."""
    import pandas as pd

    rows = figures.distribution()
    return pd.DataFrame({name: [row.shown(values) for row in rows]
                         for name, values in _distributions(summary).items()},
                        index=[row.heading for row in rows],
                        dtype=object)  # object keeps the counts as integers


def _distributions(summary: RunSummary) -> dict[str, LatencySummary]:
    """The latency distributions ``show`` lists, by column name."""
    columns: dict[str, LatencySummary] = {"latency": summary.latency}
    if summary.uncorrected is not None:
        columns["uncorrected"] = summary.uncorrected
    columns["ttfb"] = summary.ttfb
    columns["connect"] = summary.connect
    if summary.tls.count:
        columns["tls"] = summary.tls
    return columns


def _three_decimals(value: float | str) -> str:
    if isinstance(value, (int, str)):
        return str(value)
    return "-" if math.isnan(value) else f"{value:.3f}"


def timeline_view(timeline: pd.DataFrame) -> pd.DataFrame:
    """A timeline as ``show --timeline`` prints it: an interval's percentile that its requests
    cannot support reads figures.UNSUPPORTED (at 100 requests in an interval, its p99 is its
    max)."""
    shown = timeline.copy()
    for column, unsupported in timeline_unsupported(timeline).items():
        shown[column] = shown[column].astype(object).where(~unsupported, figures.UNSUPPORTED)
    return shown


# --- the panel: the last run, as a table and a line ------------------------------------------

def last_run_table(summary: RunSummary) -> pd.DataFrame:
    """The figures of one run, in milliseconds, as text to read: corrected and (open loop)
    uncorrected, four significant digits, ``—`` where nothing was measured."""
    import pandas as pd

    columns = {"latency": summary.latency, "ttfb": summary.ttfb}
    if summary.uncorrected is not None:
        columns = {"latency (corrected)": summary.latency,
                   "latency (uncorrected)": summary.uncorrected, "ttfb": summary.ttfb}
    rows = figures.last_run()
    return pd.DataFrame({name: [format_figure(row.shown(values)) for row in rows]
                         for name, values in columns.items()},
                        index=[row.heading for row in rows])


def headline(summary: RunSummary, *, stopped_early: bool = False) -> str:
    """One line of the run's summary, as the panel says it when the run ends."""
    errors = describe_counts(summary.errors) or "no errors"
    codes = ", ".join(f"{code}: {count:,}" for code, count in summary.status_codes.items())
    text = (f"{summary.requests:,} requests in {summary.duration_s:.2f} s, "
            f"{summary.rps:,.0f} requests/s, {errors}" + (f" (status {codes})" if codes else ""))
    if summary.target_rate is not None:
        text += f"; target {summary.target_rate:,.0f}/s, {summary.late or 0:,} sent late"
        if summary.kept_up is False:
            text += " -- the target rate was not kept"
    if stopped_early:
        text += " (stopped early)"
    return text

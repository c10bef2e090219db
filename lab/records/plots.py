"""Plots of one run or several overlaid, as matplotlib Figures.

The functions build ``matplotlib.figure.Figure`` objects directly instead of going through
``pyplot``: no global figure state, nothing to close, no GUI backend chosen behind the user's
back (so the CLI and the tests never need a display). In a notebook a returned Figure
displays inline: importing this module inside IPython registers a PNG formatter for Figures
unless one is registered already (``%matplotlib inline`` does, and then its settings win).
From the CLI :func:`save_figure` writes PNG, SVG or PDF by the file's suffix.

Several records overlay in one figure, each labelled by the settings that differ between them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from lab.errors import ConfigError
from lab.measure.hgrm import percentile_distribution
from lab.measure.hiccup import HiccupRecord
from lab.measure.samples import ErrorKind, start_ns
from lab.measure.stats import percentile
from lab.measure.summary import METRICS, metric_ns
from lab.records.compare import labels
from lab.records.files import write_with_atomically
from lab.records.record import Record
from lab.units import NS_PER_MS, NS_PER_S

FIGURE_SIZE = (9.0, 5.0)
SPECTRUM_MARKS = {10.0: "90%", 100.0: "99%", 1_000.0: "99.9%", 10_000.0: "99.99%"}
METRIC_TITLES = {"latency": "latency", "uncorrected": "uncorrected latency",
                 "ttfb": "time to first byte", "connect": "connect time"}

Records = Record | Sequence[Record]


def as_list(records: Records) -> list[Record]:
    listed = [records] if isinstance(records, Record) else list(records)
    if not listed:
        raise ConfigError("records", "nothing to plot")
    return listed


def _new_figure(rows: int = 1, **options: Any) -> tuple[Figure, Any]:
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    return figure, figure.subplots(rows, 1, **options)


def _values_ms(record: Record, metric: str) -> np.ndarray:
    return metric_ns(record.samples, metric) / NS_PER_MS


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError("metric", f"{metric!r} is not allowed; allowed: one of {', '.join(METRICS)}")


def _title(kind: str, records: list[Record], metric: str) -> str:
    # The run on a line of its own: in one line a long name pushes the title past a
    # notebook-sized figure's edge.
    what = METRIC_TITLES[metric]
    if len(records) == 1:
        return f"{kind} of {what}\n{records[0].name} ({records[0].id})"
    return f"{kind} of {what} — {len(records)} runs"


def _log_ms(axis: Any) -> None:
    """A latency axis on a log scale, ticked at 1, 2 and 5 of each decade and labelled in
    milliseconds (``0.2 ms``, ``1 ms``, ``50 ms``): matplotlib's ``10⁻¹`` asks the reader to
    convert, and ticks only at powers of ten leave a 44 ms line unreadable."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _position: format_ms_tick(value)))
    axis.set_minor_formatter(NullFormatter())


def format_ms_tick(value: float) -> str:
    """``0.1`` -> ``0.1 ms``, ``2000`` -> ``2,000 ms``: no exponent, one unit on every axis."""
    if value >= 1:
        return f"{value:,.0f} ms" if value == round(value) else f"{value:,g} ms"
    return f"{np.format_float_positional(value, precision=6, trim='-')} ms"


def _finish_legend(axes: Axes) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")


# --- histogram ------------------------------------------------------------------------------

def histogram(records: Records, *, metric: str = "latency", bins: int = 80) -> Figure:
    """Share of requests per latency bin, on a log x axis (latency spans decades)."""
    _check_metric(metric)
    listed = as_list(records)
    figure, axes = _new_figure()
    every = [_values_ms(record, metric) for record in listed]
    positive = np.concatenate([values[values > 0] for values in every] or [np.array([])])
    if positive.size:
        edges = np.geomspace(positive.min(), positive.max() * 1.0001, bins + 1)
        for values, label in zip(every, labels(listed), strict=True):
            if values.size:
                axes.hist(values, bins=edges, weights=np.full(values.size, 100.0 / values.size),
                          histtype="step", linewidth=1.4, label=label)
        axes.set_xscale("log")
        # A margin on both sides: a peak in the last bin (the ~40 ms Nagle stall) must not
        # sit on the frame, where it reads as cut off.
        axes.set_xlim(edges[0] / 1.3, edges[-1] * 1.3)
        _log_ms(axes.xaxis)
    if len(listed) == 1 and every[0].size:
        _mark_percentiles(axes, every[0])
    axes.set_xlabel(f"{METRIC_TITLES[metric]} (ms, log scale)")
    axes.set_ylabel("share of requests (%)")
    axes.set_title(_title("Histogram", listed, metric), wrap=True)
    _finish_legend(axes)
    return figure


def _mark_percentiles(axes: Axes, values_ms: np.ndarray) -> None:
    for name, percent, style in (("p50", 50, ":"), ("p99", 99, "--"), ("p99.9", 99.9, "-.")):
        value = percentile(values_ms, percent)
        axes.axvline(value, color="grey", linestyle=style, linewidth=1,
                     label=f"{name} = {value:.3g} ms")


# --- CDF ------------------------------------------------------------------------------------

def cdf(records: Records, *, metric: str = "latency") -> Figure:
    """Share of requests at or below each latency (empirical CDF), log x axis."""
    _check_metric(metric)
    listed = as_list(records)
    figure, axes = _new_figure()
    for record, label in zip(listed, labels(listed), strict=True):
        values = np.sort(_values_ms(record, metric))
        if values.size:
            shares = np.arange(1, values.size + 1) / values.size * 100
            axes.step(values, shares, where="post", linewidth=1.4, label=label)
    axes.set_xscale("log")
    _log_ms(axes.xaxis)
    axes.set_ylim(0, 100.5)
    for level in (50, 90, 99):
        axes.axhline(level, color="grey", linestyle=":", linewidth=0.8)
    axes.set_xlabel(f"{METRIC_TITLES[metric]} (ms, log scale)")
    axes.set_ylabel("requests at or below (%)")
    axes.set_title(_title("CDF", listed, metric), wrap=True)
    _finish_legend(axes)
    return figure


# --- percentile spectrum --------------------------------------------------------------------

def percentile_spectrum(records: Records, *, metric: str = "latency",
                        show_uncorrected: bool = True) -> Figure:
    """Latency by percentile in the HdrHistogram style: x = 1/(1-p) on a log axis, so the
    tail (99 %, 99.9 %, 99.99 %) gets as much room as the median. Latency is on a log axis
    too: overlaid runs 200 times apart would otherwise draw the fast one as a flat line at 0.

    For a single open-loop run the uncorrected figure is drawn too (dashed): the gap between
    the two lines is what coordinated omission would have hidden.
    """
    _check_metric(metric)
    listed = as_list(records)
    figure, axes = _new_figure()
    widest = 10.0
    for record, label in zip(listed, labels(listed), strict=True):
        line = _spectrum_line(axes, _values_ms(record, metric) * NS_PER_MS, label, "-")
        widest = max(widest, line)
        if (show_uncorrected and len(listed) == 1 and metric == "latency"
                and record.summary.open_loop):
            _spectrum_line(axes, metric_ns(record.samples, "uncorrected"),
                           "uncorrected (from the actual send)", "--")
    axes.set_xscale("log")
    axes.set_xlim(1, widest * 1.5)
    marks = {x: text for x, text in SPECTRUM_MARKS.items() if x <= widest * 1.5}
    axes.xaxis.set_major_locator(FixedLocator([1.0, *marks]))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticklabels(["0%", *marks.values()])
    for x in marks:
        axes.axvline(x, color="grey", linestyle=":", linewidth=0.8)
    axes.set_yscale("log")
    _log_ms(axes.yaxis)
    axes.grid(True, which="major", axis="y", color="grey", linewidth=0.4, alpha=0.5)
    axes.set_xlabel("percentile (x = 1/(1-p), log scale)")
    axes.set_ylabel(f"{METRIC_TITLES[metric]} (ms, log scale)")
    axes.set_title(_title("Percentile spectrum", listed, metric), wrap=True)
    _finish_legend(axes)
    return figure


def _spectrum_line(axes: Axes, values_ns: np.ndarray, label: str, style: str) -> float:
    """Draw one spectrum; returns the largest finite x it reached."""
    rows = [row for row in percentile_distribution(values_ns) if row.fraction < 1.0]
    if not rows:
        return 1.0
    x = [row.inverse for row in rows]
    y = [row.value_ns / NS_PER_MS for row in rows]
    axes.plot(x, y, style, linewidth=1.4, label=label)
    return max(x)


# --- timeline -------------------------------------------------------------------------------

def timeline(records: Records, *, interval_s: float | None = None, max_points: int = 20_000) -> Figure:
    """Latency over the run: raw points, with per-interval p50 and p99 as a band; below,
    requests and errors per second."""
    listed = as_list(records)
    figure, (top, bottom) = _new_figure(2, sharex=True, height_ratios=(3, 1))
    colours = [f"C{index}" for index in range(len(listed))]
    for record, label, colour in zip(listed, labels(listed), colours, strict=True):
        _raw_points(top, record, colour, max_points // len(listed))
        frame = record.timeline(interval_s)
        middle = frame["start_s"] + frame["duration_s"].fillna(0) / 2
        top.fill_between(middle, frame["p50_ms"], frame["p99_ms"], color=colour, alpha=0.18,
                         step="mid", linewidth=0)
        top.step(middle, frame["p50_ms"], where="mid", color=colour, linewidth=1.2,
                 label=f"{label}: p50")
        top.step(middle, frame["p99_ms"], where="mid", color=colour, linewidth=1.2, linestyle="--",
                 label=f"{label}: p99")
        bottom.step(middle, frame["requests_per_s"], where="mid", color=colour, linewidth=1.2)
        if frame["errors"].sum():
            bottom.step(middle, frame["errors_per_s"], where="mid", color="red", linewidth=1,
                        label=f"{label}: errors/s")
        for hiccups in record.hiccups:
            _hiccup_line(top, hiccups, colour, label)
        _mark_changes(top, bottom, record, colour if len(listed) > 1 else "black")
    top.set_yscale("log")
    _log_ms(top.yaxis)
    top.set_ylabel("latency (ms, log scale)")
    top.set_title("Latency over time" + (f"\n{listed[0].name} ({listed[0].id})" if len(listed) == 1
                                          else f" — {len(listed)} runs"), wrap=True)
    bottom.set_ylabel("requests/s")
    bottom.set_xlabel("time since the run started (s)")
    _finish_legend(top)
    _finish_legend(bottom)
    return figure


HICCUP_LINE_STYLES = {"server": "-.", "generator": ":"}


def _hiccup_line(axes: Axes, hiccups: HiccupRecord, colour: str, label: str) -> None:
    """A loop's largest hiccup of each interval, on the run's time axis: a platform stall lines
    up with the requests it held; slow work leaves it flat."""
    if not hiccups.series:
        return
    starts, peaks = (np.asarray(column, dtype=np.float64) for column in zip(*hiccups.series, strict=True))
    # The latency axis is logarithmic: a loop that woke on time is drawn at 1 us, not lost at 0.
    # The server's and the generator's are drawn apart (and named) so a stall reads as whose.
    axes.plot(starts + hiccups.interval_s / 2, np.maximum(peaks, 0.001), color=colour, linewidth=0.9,
              linestyle=HICCUP_LINE_STYLES.get(hiccups.source, "-."),
              label=f"{label}: {hiccups.source} loop hiccups (max per {hiccups.interval_s:g} s)")


def _mark_changes(top: Axes, bottom: Axes, record: Record, colour: str) -> None:
    """A vertical line at each change made during the run, labelled at the top (``nodelay →
    off``): the latency on either side of it is the effect of that one change."""
    for marker in record.markers:
        for axes in (top, bottom):
            axes.axvline(marker.t_s, color=colour, linewidth=1, linestyle=":", alpha=0.8)
        top.annotate(marker.label, xy=(marker.t_s, 1), xycoords=("data", "axes fraction"),
                     xytext=(3, -3), textcoords="offset points", rotation=90, va="top",
                     ha="left", fontsize=8, color=colour)


def _raw_points(axes: Axes, record: Record, colour: str, max_points: int) -> None:
    """Every request as a dot; if too many, all of the slowest 1 % plus an even sample of the
    rest, so that a thinned plot still shows every spike."""
    samples = record.samples[record.samples["error"] == ErrorKind.NONE]
    if samples.size == 0:
        return
    first = start_ns(record.samples).min()
    when_s = (samples["done_ns"] - first) / NS_PER_S
    latency_ms = (samples["done_ns"] - start_ns(samples)) / NS_PER_MS
    chosen = np.arange(samples.size)
    if samples.size > max_points:
        slowest = np.argsort(latency_ms)[-max(1, samples.size // 100):]
        stride = max(1, samples.size // max(1, max_points - slowest.size))
        chosen = np.union1d(np.arange(0, samples.size, stride), slowest)
    axes.scatter(when_s[chosen], latency_ms[chosen], s=2, color=colour, alpha=0.25, linewidths=0,
                 rasterized=True)


# --- by name --------------------------------------------------------------------------------

PLOT_KINDS: dict[str, Callable[..., Figure]] = {
    "hist": histogram,
    "cdf": cdf,
    "percentiles": percentile_spectrum,
    "timeline": timeline,
}


def plot(records: Records, kind: str, **options: Any) -> Figure:
    if kind not in PLOT_KINDS:
        raise ConfigError("kind", f"{kind!r} is not allowed; allowed: one of {', '.join(PLOT_KINDS)}")
    return PLOT_KINDS[kind](records, **options)


PICTURE_FORMATS = ("png", "svg", "pdf")


def picture_format(path: Path | str) -> str | None:
    """The picture format a file name's suffix names (.png, .svg, .pdf), or None."""
    suffix = Path(path).suffix.lstrip(".").lower()
    return suffix if suffix in PICTURE_FORMATS else None


def save_figure(figure: Figure, path: Path | str, *, dpi: int = 120) -> Path:
    """Write a figure; the format follows the suffix (.png, .svg, .pdf)."""
    target = Path(path)
    suffix = picture_format(target)
    if suffix is None:
        raise ConfigError("path", f"{target}: unknown picture format {suffix!r}; use .png, .svg or .pdf")
    write_with_atomically(target, lambda temporary: figure.savefig(temporary, dpi=dpi, format=suffix))
    return target


# --- inline display in Jupyter --------------------------------------------------------------

def _figure_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def enable_inline_display() -> bool:
    """Make IPython render a returned Figure as PNG; True if this call registered it.

    Without pyplot nobody tells IPython how to show a Figure, and a cell would print
    ``<Figure size 900x500 with 1 Axes>`` instead of the picture.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    formatter = shell.display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        formatter.for_type(Figure, _figure_png)
        return True
    return False


enable_inline_display()

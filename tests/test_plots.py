"""Plots: every kind renders from a real run, overlays are labelled by what differs, and a
Figure displays inline in a notebook kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from nbclient import NotebookClient

from lab.records import plots
from lab.records.compare import labels
from lab.records.record import Record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", sorted(plots.PLOT_KINDS))
def test_each_plot_kind_renders_a_png_from_a_real_run(kind: str, tmp_path: Path,
                                                      open_loop_run: Record) -> None:
    figure = plots.plot(open_loop_run, kind)
    assert isinstance(figure, Figure)
    path = plots.save_figure(figure, tmp_path / f"{kind}.png")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


@pytest.mark.parametrize("kind", sorted(plots.PLOT_KINDS))
def test_overlays_are_labelled_by_the_settings_that_differ(kind: str, tmp_path: Path, open_loop_run: Record,
                                                           closed_loop_run: Record) -> None:
    figure = plots.plot([open_loop_run, closed_loop_run], kind)
    legend_texts = " ".join(text.get_text() for axes in figure.axes if axes.get_legend()
                            for text in axes.get_legend().get_texts())
    assert "mode=open" in legend_texts and "mode=closed" in legend_texts
    assert plots.save_figure(figure, tmp_path / f"{kind}.svg").read_text().startswith("<?xml")


def test_spectrum_of_an_open_loop_run_shows_the_uncorrected_line_too(open_loop_run: Record) -> None:
    figure = plots.percentile_spectrum(open_loop_run)
    names = [line.get_label() for line in figure.axes[0].get_lines()]
    assert "uncorrected (from the actual send)" in names
    ticks = [label.get_text() for label in figure.axes[0].get_xticklabels()]
    assert {"90%", "99%"} <= set(ticks)


def test_labels_fall_back_to_names_when_settings_agree(open_loop_run: Record) -> None:
    twin = open_loop_run.replace(name="twin")
    assert labels([open_loop_run, twin]) == ["open-stall", "twin"]


def test_unknown_kind_or_metric_is_named(open_loop_run: Record, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind: 'pie'"):
        plots.plot(open_loop_run, "pie")
    with pytest.raises(ValueError, match="metric: 'speed'"):
        plots.histogram(open_loop_run, metric="speed")
    with pytest.raises(ValueError, match="unknown picture format"):
        plots.save_figure(plots.cdf(open_loop_run), tmp_path / "plot.docx")


def test_a_figure_displays_inline_in_a_notebook(tmp_path: Path, synthetic_record: Record) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(
        "from lab.records import plots\n"
        "from lab.records.record import Record\n"
        "from conftest import synthetic_samples\n"
        "record = Record.create(samples=synthetic_samples(500), load_spec={}, name='inline')\n"
        "plots.percentile_spectrum(record)")]
    client = NotebookClient(notebook, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(__file__).parent)}})
    client.execute()
    outputs = notebook.cells[0].outputs
    assert any("image/png" in output.get("data", {}) for output in outputs), outputs


def _two_hundred_times_apart(synthetic_record: Record) -> list[Record]:
    fast = synthetic_record.samples.copy()
    slow = fast.copy()
    slow["first_byte_ns"] = np.where(slow["first_byte_ns"] > 0,
                                     slow["sent_ns"] + (slow["first_byte_ns"] - slow["sent_ns"]) * 200, -1)
    slow["done_ns"] = slow["sent_ns"] + (slow["done_ns"] - slow["sent_ns"]) * 200
    slow["intended_ns"] = slow["sent_ns"]
    return [synthetic_record.replace(name="fast"),
            Record.create(samples=slow, name="slow", load_spec=synthetic_record.load_spec,
                          server_config=synthetic_record.server_config)]


def test_the_spectrum_is_readable_at_two_hundred_times(synthetic_record: Record) -> None:
    """Overlaid runs 200 times apart: on a linear latency axis the fast run is a flat line at 0
    (its p50 to p99.9 covered under 1 % of the height); on the log axis it covers a good part."""
    figure = plots.percentile_spectrum(_two_hundred_times_apart(synthetic_record))
    FigureCanvasAgg(figure).draw()
    axes = figure.axes[0]
    assert axes.get_yscale() == "log"
    fast = next(line for line in axes.get_lines() if line.get_label().startswith("fast"))
    heights = axes.transAxes.inverted().transform(axes.transData.transform(fast.get_xydata()))[:, 1]
    assert heights.max() - heights.min() > 0.25, heights
    labels_ = [label.get_text() for label in axes.get_yticklabels()]
    assert {"0.1 ms", "1 ms", "10 ms"} <= set(labels_), labels_


@pytest.mark.parametrize("kind", ["hist", "cdf", "timeline"])
def test_log_axes_are_labelled_in_milliseconds(kind: str, synthetic_record: Record) -> None:
    figure = plots.plot(_two_hundred_times_apart(synthetic_record), kind)
    FigureCanvasAgg(figure).draw()
    axes = figure.axes[0]
    axis = axes.yaxis if kind == "timeline" else axes.xaxis
    texts = [label.get_text() for label in axis.get_ticklabels() if label.get_text()]
    assert "1 ms" in texts and "10 ms" in texts, texts
    assert not any("10^" in text or "mathdefault" in text for text in texts), texts


@pytest.mark.parametrize(("value", "text"), [(0.1, "0.1 ms"), (1.0, "1 ms"), (0.05, "0.05 ms"),
                                             (2000.0, "2,000 ms"), (0.0002, "0.0002 ms")])
def test_a_tick_is_written_in_milliseconds(value: float, text: str) -> None:
    assert plots.format_ms_tick(value) == text

"""The control panel, driven as a user would: set widgets, press buttons, read what it shows."""

from __future__ import annotations

import asyncio
import io
import math

import numpy as np
import pytest
from conftest import synthetic_samples

from lab.engine.spec import LoadSpec
from lab.errors import ConfigError
from lab.http.config import ServerConfig
from lab.measure.samples import ErrorKind
from lab.notebook.panel import LabPanel, coloured
from lab.notebook.widgets import KnobForm
from lab.options import Knob, knob_label, knobs
from lab.records.compare import comparison_view, format_figure, format_ratio, short_labels
from lab.records.record import Record
from lab.records.store import RecordStore

QUICK_LOAD = {"connections": 2, "duration_seconds": 0.5}


@pytest.fixture
def panel(tmp_path):
    lab_panel = LabPanel(store=RecordStore(tmp_path / "data"), load=QUICK_LOAD)
    yield lab_panel
    lab_panel.close()


async def press_run(panel: LabPanel):
    """Click Run inside a running event loop (as in a kernel) and wait for the run's end."""
    panel.run_button.click()
    assert panel.run_task is not None, panel.message.value
    assert panel.run_button.disabled  # no second run while one is going
    return await panel.run_task


def test_run_button_makes_a_run_with_samples_and_a_figure(panel):
    panel.server_form.controls["nodelay"].value_widget.value = False
    panel.server_form.controls["keepalive_max_requests"].enabled.value = True
    panel.server_form.controls["keepalive_max_requests"].value_widget.value = 50
    record = asyncio.run(press_run(panel))

    assert record is not None, panel.message.value
    assert len(record.samples) > 10
    assert panel.server.config.nodelay is False  # reconfigured as the widgets said
    assert panel.server.config.keepalive_max_requests == 50
    assert record.server_config["nodelay"] is False
    assert "requests/s" in panel.message.value
    assert not panel.run_button.disabled
    for figure in panel.figures:
        png = io.BytesIO()
        figure.savefig(png, format="png")
        assert png.getvalue().startswith(b"\x89PNG")
        assert figure.axes and figure.axes[0].lines


def test_a_run_keeps_the_servers_and_the_generators_hiccups_apart(tmp_path):
    panel = LabPanel(store=RecordStore(tmp_path / "data"), load={**QUICK_LOAD, "hiccup_meter": True})
    try:
        panel.set(hiccup_meter=True)  # by name, the server's knob (the load's is set above)
        assert panel.apply(), panel.message.value
        record = asyncio.run(press_run(panel))
    finally:
        panel.close()
    assert record is not None, panel.message.value
    assert [hiccups.source for hiccups in record.hiccups] == ["server", "generator"]
    assert all(hiccups.distribution.count > 0 for hiccups in record.hiccups)


def test_bad_value_shows_a_message_and_the_next_run_works(panel):
    panel.load_form.controls["connections"].value_widget.value = 0
    assert panel.start_run() is None
    assert "connections" in panel.message.value and "allowed" in panel.message.value
    assert not panel.run_button.disabled

    panel.server_form.controls["read_buffer_bytes"].value_widget.value = 3
    assert panel.start_run() is None
    assert "read buffer (bytes): " in panel.message.value  # by the label the panel shows
    assert panel.server_form.controls["read_buffer_bytes"].value_widget.value == 65536  # reset

    panel.load_form.controls["connections"].value_widget.value = 2
    record = asyncio.run(press_run(panel))
    assert record is not None and len(record.samples) > 0


def test_open_loop_run_and_session_table(panel):
    asyncio.run(press_run(panel))
    panel.load_form.controls["mode"].value_widget.value = "open"
    panel.load_form.controls["rate"].enabled.value = True
    panel.load_form.controls["rate"].value_widget.value = 200
    record = asyncio.run(press_run(panel))
    assert record is not None, panel.message.value
    assert record.load_spec["mode"] == "open"
    table = panel.runs_table()
    assert len(table.columns) >= 2 or len(table) >= 2
    assert len(panel.overlay_pick.options) == 2
    assert panel.overlay([0, 1]) is not None


def test_a_short_run_marks_the_percentiles_it_cannot_support_and_says_why(panel):
    panel.set(mode="open", rate="40", duration_seconds="0.5")  # about 20 requests
    record = asyncio.run(press_run(panel))
    assert record is not None and record.summary.latency.count < 100, panel.message.value
    assert "too few" in panel.summary_view.value
    assert f"fewer than 5 of the {record.summary.latency.count} samples" in panel.summary_view.value
    assert f"{record.summary.latency.max:.4g}" not in panel.summary_view.value.split("p99.9 ms")[1][:80]


def test_stop_ends_a_long_run_early_and_keeps_its_samples(panel):
    panel.load_form.controls["duration_seconds"].value_widget.value = 30

    async def run_and_stop():
        task = panel.start_run()
        await asyncio.sleep(1.0)
        panel.stop_button.click()
        return await task

    record = asyncio.run(run_and_stop())
    assert record is not None
    assert len(record.samples) > 0
    assert "stopped early" in panel.message.value
    outcome = panel.runs_view.value.split("<th>outcome</th>")[1].split("</tr>")[0]
    assert "passed" not in outcome and "STOPPED" in outcome  # a part of a run did not pass


def test_save_and_export(panel, tmp_path):
    asyncio.run(press_run(panel))
    saved = panel.save()
    assert len(saved) == 1 and saved[0].is_dir()
    assert len(panel.store.runs()) == 1
    exported = panel.export("csv")
    assert exported[0].read_text().count("\n") == len(panel.records[0].samples) + 1
    assert len(panel.store.runs()) == 1  # the exports folder is not taken for a record


def test_process_isolation_switch(panel):
    port = panel.server.port
    panel.isolation.value = "process"
    assert panel.server.isolation == "process"
    assert panel.server.port == port
    record = asyncio.run(press_run(panel))
    assert record is not None and len(record.samples) > 0


def test_a_run_without_a_success_is_shown_failed_in_red(panel):
    panel.path.value = "/no-such-page"
    record = asyncio.run(press_run(panel))
    assert record is not None and len(record.samples) > 0
    message = panel.message.value
    assert "#b00020" in message and "#2e7d32" not in message  # red, not green
    assert "FAILED: no request succeeded: every answer was 404" in message
    assert panel.message_text.startswith("FAILED: no request succeeded: every answer was 404 -- ")
    assert "<" not in panel.message_text  # what notebook 09 prints: no raw HTML
    assert "404: " in message  # the status codes are named
    assert "no request succeeded" in panel.summary_view.value and "#b00020" in panel.summary_view.value
    assert panel.figures == [] and panel.plots_view.children == ()  # no empty axes
    assert ">done: " in panel.progress_text.value and "#b00020" in panel.progress_text.value
    assert panel.progress.bar_style == "danger"
    assert "FAILED: no request succeeded: every answer was 404" in panel.runs_view.value
    assert panel.overlay([0]) is None and panel.overlay_view.children == ()
    assert "not overlaid (no request succeeded): run 1" in panel.keep_message.value


def test_headline_and_progress_read_the_one_summary(panel):
    panel.load_form.controls["thresholds"].value_widget.value = "p50<10s, errors<1%"
    record = asyncio.run(press_run(panel))
    summary = panel.results[-1].summary
    assert record.summary.as_dict() == summary.as_dict()
    assert f"{summary.rps:,.0f} requests/s" in panel.message.value
    assert "✓ p50&lt;10s (measured " in panel.message.value and "#2e7d32" in panel.message.value
    assert f">done: {summary.requests:,} requests, 0 failed, " in panel.progress_text.value
    assert "s left" not in panel.progress_text.value
    assert "#2e7d32" in panel.progress_text.value  # green: the run passed
    assert f"{summary.rps:,.0f} req/s" in panel.progress_text.value
    table = panel.runs_table()
    assert table.loc["requests/s", record.name] == summary.rps


def test_a_websocket_path_runs_messages(panel):
    panel.path.value = "/ws/echo"
    panel.load_form.controls["message_bytes"].value_widget.value = 64
    panel.load_form.controls["message_type"].value_widget.value = "binary"
    record = asyncio.run(press_run(panel))
    assert record is not None, panel.message.value
    assert record.load_spec["url"].startswith("ws://") and record.load_spec["message_bytes"] == 64
    assert len(record.samples) > 10 and set(record.samples["status"]) == {101}
    assert set(record.samples["response_bytes"]) == {64 + 2}  # the echo's frame


# --- the pure parts: labels, rounding, failures ------------------------------------------------

@pytest.mark.parametrize(("config_class", "name", "label"), [
    (LoadSpec, "duration_seconds", "duration (s)"), (LoadSpec, "rate", "rate (requests/s)"),
    (LoadSpec, "message_bytes", "message size (bytes)"), (LoadSpec, "late_after_ms", "late after (ms)"),
    (LoadSpec, "think_ms", "think time (ms)"),
    (ServerConfig, "read_buffer_bytes", "read buffer (bytes)"), (ServerConfig, "nodelay", "nodelay"),
    (ServerConfig, "keepalive_max_requests", "keepalive max requests"),
    (ServerConfig, "stall_ms", "stall length (ms)"), (ServerConfig, "linger_seconds", "linger (s)"),
])
def test_knob_labels_are_words_with_the_declared_unit(config_class, name, label):
    spec = next(spec for field, spec in knobs(config_class) if field.name == name)
    assert knob_label(name, spec) == label


def test_quickack_is_one_control_of_its_three_states():
    form = KnobForm(ServerConfig, ServerConfig())
    control = form.controls["quickack"]
    assert control.enabled is None  # no "none" checkbox: the kernel's default is a state of its own
    assert [label for label, _ in control.value_widget.options] == ["kernel default", "on", "off"]
    assert form.build(ServerConfig()).quickack is None
    for state in (False, True, None):
        form.show(ServerConfig(quickack=state))
        assert form.build(ServerConfig()).quickack is state


def test_a_name_that_is_only_its_unit_keeps_its_word():
    assert knob_label("seconds", Knob(help="", unit="s")) == "seconds (s)"


def test_every_widget_label_is_derived_and_none_is_snake_case():
    for config_class, current in ((ServerConfig, ServerConfig()), (LoadSpec, LoadSpec(url="http://127.0.0.1/"))):
        form = KnobForm(config_class, current)
        specs = dict((field.name, spec) for field, spec in knobs(config_class))
        for name, control in form.controls.items():
            label = control.widget.children[0]
            assert label.value == knob_label(name, specs[name]) == control.label
            assert "_" not in label.value, label.value
            unit = specs[name].unit
            assert not unit or label.value.count(f"({unit})") == 1, label.value  # said once
            assert label.tooltip.startswith(f"{name}: ")  # the name panel.set and the CLI take


@pytest.mark.parametrize(("value", "text"), [
    (0.205123, "0.2051"), (55.10642, "55.11"), (203.4951, "203.5"), (20484.977, "20,485"),
    (61459, "61,459"), (0, "0"), (float("nan"), "—"), (None, "—"), (1.0, "1"),
])
def test_figures_are_rounded_to_four_significant_digits(value, text):
    assert format_figure(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (0.97894342, "×0.979"), (1.0, "×1"), (218.4, "×218"), (1066.6, "×1,067"), (1e3, "×1,000"),
    (0.00099, "×0.00099"), (float("nan"), ""),
])
def test_ratios_read_without_exponents(value, text):
    assert format_ratio(value) == text


def _record(name: str, *, status: int = 200, nodelay: bool = True, path: str = "/fast",
            thresholds: tuple[str, ...] = ()) -> Record:
    samples = synthetic_samples(400, open_loop=False)
    samples["status"] = np.where(samples["status"] == 0, 0, status)
    if status >= 400:
        samples["error"][samples["status"] == status] = ErrorKind.BAD_STATUS  # as the engine marks it
    return Record.create(samples=samples, name=name,
                         load_spec={"mode": "closed", "connections": 2, "url": f"http://127.0.0.1:9/{path[1:]}",
                                    "thresholds": list(thresholds)},
                         server_config={"nodelay": nodelay})


def test_comparison_view_rounds_says_ratios_and_leaves_out_what_no_run_measured():
    view = comparison_view([_record("run 1"), _record("run 2", nodelay=False)])
    table = view.table
    assert list(table.columns) == ["run 1", "run 2"]
    assert table.loc["nodelay"].tolist() == ["on", "off"]
    cells = table.loc["p50 ms"].tolist()
    assert cells[1].endswith("(×1)") and "." in cells[0] and len(cells[0].replace(".", "")) <= 5
    assert "uncorrected p99 ms" not in table.index  # closed loops: NaN in every run
    assert any("uncorrected p99 ms" in note and "open loop" in note for note in view.notes)
    assert not any(isinstance(cell, float) and math.isnan(cell) for cell in table.to_numpy().ravel())
    assert "nan" not in view.to_html().lower()


def test_a_figure_missing_in_one_run_reads_as_a_dash():
    failed = _record("run 2", status=404)
    view = comparison_view([_record("run 1"), failed])
    assert view.table.loc["p50 ms", "run 2"] == "—"
    assert view.table.loc["errors", "run 2"].startswith(f"{format_figure(failed.summary.error_total)} (×")


def test_a_run_without_a_success_is_failed_and_red_in_the_table():
    failed = _record("run 2", status=404, path="/no-such-page")
    view = comparison_view([_record("run 1"), failed])
    assert view.failed == {"run 2": "no request succeeded: every answer was 404"}
    assert view.table.loc["outcome"].tolist() == [
        "passed", "FAILED: no request succeeded: every answer was 404"]
    assert view.table.loc["url"].tolist() == ["/fast", "/no-such-page"]  # the part that differs
    html = view.to_html()
    assert '<th style="color:#b00020">run 2</th>' in html and '<th>run 1</th>' in html
    assert html.count("color:#b00020") == 2  # the column's name and its outcome, nothing else


def test_a_violated_threshold_fails_the_run_too():
    view = comparison_view([_record("run 1", thresholds=("p50<1us",))])
    assert view.failed["run 1"].startswith("threshold failed: p50<1us")


def test_many_runs_keep_the_baseline_and_the_latest():
    records = [_record(f"run {index}", nodelay=index % 2 == 0) for index in range(1, 10)]
    view = comparison_view(records, max_runs=4)
    assert list(view.table.columns) == ["run 1", "run 7", "run 8", "run 9"]
    assert any("showing 4 of 9 runs" in note for note in view.notes)


def test_overlay_labels_put_what_differs_right_after_the_name():
    labels = short_labels([_record("run 1"), _record("run 2", nodelay=False, path="/slow")])
    assert labels == ["run 1 · url /fast · nodelay on", "run 2 · url /slow · nodelay off"]


def test_colours_say_failure_in_red_and_escape_the_text():
    assert coloured("<b>", error=True) == '<span style="color:#b00020">&lt;b&gt;</span>'
    assert coloured("ok") == '<span style="color:#2e7d32">ok</span>'


def test_save_and_export_answer_beside_their_buttons(panel):
    asyncio.run(press_run(panel))
    message_before = panel.message.value
    panel.save()
    assert "saved run 1 in " in panel.keep_message.value and panel.message.value == message_before
    panel.export("csv")
    assert "exported run 1 to " in panel.keep_message.value and ".csv" in panel.keep_message.value


def _bimodal_record() -> Record:
    """Most requests at ~0.2 ms, a tenth stalled at ~44 ms (Nagle and delayed ACK)."""
    samples = synthetic_samples(2000, open_loop=False, error_every=10_000)
    stalled = slice(None, None, 10)
    samples["done_ns"][stalled] = samples["sent_ns"][stalled] + 44_000_000
    return Record.create(samples=samples, name="a run with a long name that would push a title out",
                         load_spec={"mode": "closed", "connections": 1}, server_config={"nodelay": False})


@pytest.mark.parametrize("kind", ["percentiles", "hist"])
def test_panel_plots_keep_every_peak_and_every_label_inside_the_picture(kind):
    from lab.notebook.panel import PLOT_DPI, PLOT_SIZE_INCHES, figure_image
    from lab.records import plots

    figure = plots.plot(_bimodal_record(), kind)
    image = figure_image(figure)
    assert tuple(figure.get_size_inches()) == PLOT_SIZE_INCHES
    assert image.layout.width == f"{round(PLOT_SIZE_INCHES[0] * PLOT_DPI)}px"
    assert image.layout.max_width == "100%"  # shrinks with a narrower output area
    figure.draw_without_rendering()
    drawn = figure.get_tightbbox()  # inches: titles, labels, legend, ticks
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01
    assert drawn.x1 <= PLOT_SIZE_INCHES[0] + 0.01 and drawn.y1 <= PLOT_SIZE_INCHES[1] + 0.01
    axes = figure.axes[0]
    if kind == "hist":  # both peaks within the x axis
        low, high = axes.get_xlim()
        slowest = max(max(patch.get_path().vertices[:, 0]) for patch in axes.patches)
        assert low <= 0.05 and slowest >= 44 and high >= slowest * 1.2  # room right of the peak
    else:
        low, high = axes.get_ylim()
        assert high >= 44


def test_progress_counts_bad_statuses_as_failed_while_running():
    from lab.loadgen import LoadProgress
    from lab.measure.frames import Frame
    from lab.notebook.panel import progress_line

    running = LoadProgress("running", 1200, 0, 0.5, 2400.0, 2.5)  # the workers' counters
    live = Frame(index=4, requests=1200, ok=0, errors=3, bad_status=1197)
    assert progress_line(running, live) == "running: 1,200 requests, 1,200 failed, 2,400 req/s, 2.5 s left"
    assert progress_line(running) == "running: 1,200 requests, 0 failed, 2,400 req/s, 2.5 s left"
    done = LoadProgress("done", 1200, 1200, 0.5, 2400.0, 0.0)  # the summary's error_total
    assert progress_line(done, Frame(index=0)) == "done: 1,200 requests, 1,200 failed, 2,400 req/s"


def test_a_network_path_knob_on_a_panel_without_a_path_says_how_to_get_one() -> None:
    panel = LabPanel()
    try:
        with pytest.raises(ConfigError, match=r"delay_ms.*LabPanel\(network_path="):
            panel.set(delay_ms=20)
    finally:
        panel.close()


def test_a_run_on_a_dask_cluster_is_followed_live_like_a_local_one(panel):
    pytest.importorskip("distributed")
    panel.set(cluster="local:2", mode="open", rate=400, connections=4, duration_seconds=1.5)
    record = asyncio.run(press_run(panel))
    assert record is not None, panel.message.value
    result = panel.results[-1]
    assert result.outcome.cluster is not None and len(result.outcome.cluster["per_worker"]) == 2
    assert result.requests == pytest.approx(600, abs=6)  # the rate split between the workers
    assert panel.live.frames >= 3  # drawn while it ran, from the workers' frames
    assert f"done: {result.requests:,} requests" in panel.progress_text.value


def test_a_cluster_that_is_no_cluster_is_named_before_anything_starts(panel):
    with pytest.raises(ConfigError) as caught:
        panel.set(cluster="local:zero")
    assert caught.value.option == "cluster" and panel.cluster.value == ""
    panel.cluster.value = "nowhere:8786"
    assert panel.start_run() is None
    assert "cluster" in panel.message.value and "tcp://HOST:PORT" in panel.message.value
    assert not panel.run_button.disabled


def test_a_dask_cluster_panel_draws_live_frames_while_the_run_lasts(tmp_path):
    """lab.panel(cluster=...): the run goes to Dask, and the live view is drawn from the
    workers' frames during the run, not only once it is over; they count every request."""
    pytest.importorskip("distributed")
    import lab

    panel = lab.panel(cluster="local:2", store=RecordStore(tmp_path / "data"),
                      load={"mode": "open", "rate": 400, "connections": 4, "duration_seconds": 2.0})

    async def scenario() -> tuple[Record | None, int]:
        task = panel.start_run()
        assert task is not None, panel.message.value
        drawn_while_running = 0
        while not task.done():
            if panel.live.stats.get("phase") == "running":
                drawn_while_running = panel.live.frames
            await asyncio.sleep(0.05)
        return await task, drawn_while_running

    try:
        record, drawn_while_running = asyncio.run(scenario())
    finally:
        panel.close()
    assert record is not None, panel.message.value
    result = panel.results[-1]
    assert result.outcome.cluster is not None and len(result.outcome.cluster["per_worker"]) == 2
    assert drawn_while_running >= 5, drawn_while_running  # 20 intervals in 2 s
    assert panel.live.frames >= drawn_while_running and len(panel.live.points) == panel.live.frames
    assert panel.live.stats["phase"] == "done" and panel.live.stats["requests"] == result.samples.size


def test_a_panel_hosts_an_asgi_app_and_keeps_it_across_an_isolation_switch(tmp_path):
    import httpx

    hosted = LabPanel(store=RecordStore(tmp_path / "data"), load=QUICK_LOAD,
                      app="asgi_apps:edge_app", path="/x")
    try:
        assert httpx.get(hosted.server.url + "/anything").text == "/anything"
        record = asyncio.run(press_run(hosted))
        assert record is not None, hosted.message.value
        assert len(record.samples) > 10 and record.summary.error_total == 0
        hosted.isolation.value = "process"
        assert hosted.apply(), hosted.message.value
        assert hosted.server.isolation == "process"
        assert httpx.get(hosted.server.url + "/still").text == "/still"
    finally:
        hosted.close()


def test_a_refused_run_clears_the_last_result_and_marks_the_field_by_its_label(panel):
    panel.path.value = "/no-such-page"
    asyncio.run(press_run(panel))
    assert panel.progress.bar_style == "danger" and "done: " in panel.progress_text.value
    duration = panel.load_form.controls["duration_seconds"]
    duration.value_widget.value = -1
    assert panel.start_run() is None
    assert "not started: duration (s): " in panel.message.value
    assert "duration_seconds" not in panel.message.value
    # the previous run's red bar and "done: ..." line are not this refusal's result
    assert panel.progress_text.value == "" and panel.progress.bar_style == "" and panel.progress.value == 0
    assert "lab-invalid" in duration.widget._dom_classes
    marked = [name for name, control in panel.load_form.controls.items()
              if "lab-invalid" in control.widget._dom_classes]
    assert marked == ["duration_seconds"]

    duration.value_widget.value = 0.3
    panel.path.value = "/fast"
    assert asyncio.run(press_run(panel)) is not None
    assert "lab-invalid" not in duration.widget._dom_classes  # the mark goes with the error


def test_a_refused_server_value_is_named_by_its_label_beside_apply(panel):
    panel.server_form.controls["read_buffer_bytes"].value_widget.value = 3
    assert panel.apply() is False
    label = panel.server_form.controls["read_buffer_bytes"].label
    assert f"not applied: {label}: " in panel.apply_message.value
    assert "lab-invalid" in panel.server_form.controls["read_buffer_bytes"].widget._dom_classes
    assert panel.message.value == ""  # the answer is beside the button that asked


def test_apply_answers_beside_its_button(panel):
    panel.server_form.controls["nodelay"].value_widget.value = False
    assert panel.apply()
    assert "applied nodelay=False" in panel.apply_message.value
    assert panel.message.value == ""
    server_column = panel.widget.children[1].children[0]
    assert any(panel.apply_button in row.children and panel.apply_message in row.children
               for row in server_column.children if hasattr(row, "children"))  # Apply's own row


def test_choosing_the_open_loop_ticks_the_rate(panel):
    rate = panel.load_form.controls["rate"]
    assert rate.enabled is not None and not rate.enabled.value
    panel.load_form.controls["mode"].value_widget.value = "open"
    assert rate.enabled.value and not rate.value_widget.disabled
    assert panel.load_spec().rate == rate.value_widget.value >= 1  # a start, not the box's 0.1
    rate.value_widget.value = 250
    panel.load_form.controls["mode"].value_widget.value = "closed"
    panel.load_form.controls["mode"].value_widget.value = "open"
    assert panel.load_spec().rate == 250  # a rate the user typed is kept


def test_a_saved_cli_run_is_loaded_into_the_session_and_overlaid(panel, tmp_path):
    import subprocess
    import sys

    asyncio.run(press_run(panel))
    command = [sys.executable, "-m", "lab", "bench", panel.server.url + "/fast", "-c", "2", "-d", "0.5",
               "--save", "--name", "from the cli", "--data-dir", str(panel.store.path)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert panel.load_run("no such run") is None
    assert "not loaded: " in panel.keep_message.value and "#b00020" in panel.keep_message.value
    record = panel.load_run("from the cli")
    assert record is not None and record.name == "from the cli"
    assert "loaded from the cli (" in panel.keep_message.value
    assert [kept.name for kept in panel.records] == ["run 1", "from the cli"]
    assert "from the cli" in panel.runs_view.value  # a column of the session's table
    assert any(label.startswith("from the cli") for label, _ in panel.overlay_pick.options)
    figure = panel.overlay([0, 1])
    assert figure is not None and len(figure.axes[0].lines) >= 2
    assert panel.load_run(record.id) is None and "already" in panel.keep_message.value

    asyncio.run(press_run(panel))  # the next run of the session is run 2, not run 3
    assert panel.records[-1].name == "run 2"


def test_saved_panel_runs_keep_their_label_and_never_share_a_name(panel, tmp_path):
    asyncio.run(press_run(panel))
    panel.server_form.controls["nodelay"].value_widget.value = False
    asyncio.run(press_run(panel))
    panel.overlay_pick.value = (0, 1)
    panel.save()
    names = sorted(info.name for info in panel.store.infos())
    assert names == ["run 1 · nodelay on", "run 2 · nodelay off"]
    # a second session, in the same data folder, makes its own "run 1 · nodelay on"
    other = LabPanel(store=panel.store, load=QUICK_LOAD)
    try:
        asyncio.run(press_run(other))
        other.server_form.controls["nodelay"].value_widget.value = False
        asyncio.run(press_run(other))
        other.overlay_pick.value = (0,)
        other.save()
    finally:
        other.close()
    names = sorted(info.name for info in panel.store.infos())
    assert names == ["run 1 · nodelay on", "run 1 · nodelay on (2)", "run 2 · nodelay off"]
    assert "run 1 · nodelay on (2)" in other.keep_message.value
    assert "run 1 · nodelay on (2)" in other.saved_pick.options  # offered for Load


def test_the_runs_table_names_settings_by_their_labels_and_leaves_out_what_a_run_did_not_record(panel):
    asyncio.run(press_run(panel))
    panel.load_form.controls["duration_seconds"].value_widget.value = 0.3
    asyncio.run(press_run(panel))
    rows = [row.split("</th>")[0] for row in panel.runs_view.value.split("<tr><th>")[1:]]
    assert "duration (s)" in rows and "duration_seconds" not in rows  # as the widget names it

    cli_run = _record("from the cli")  # a run of a server the lab did not start: no server settings
    cli_run = Record.create(samples=cli_run.samples, name="from the cli", load_spec=cli_run.load_spec)
    view = comparison_view([panel.records[0], cli_run], setting_labels=panel._setting_labels())
    assert not any(label.startswith("nodelay") for label in view.table.index)  # no row of dashes
    assert "server settings not compared: not recorded in from the cli" in view.notes
    assert short_labels([panel.records[0], cli_run])[1].startswith("from the cli")
    assert len(short_labels([panel.records[0], cli_run])[1]) < 80  # not every server knob "-"


def test_a_setting_both_parts_name_alike_says_whose_it_is():
    from lab.records.compare import _setting_row_labels

    labels = _setting_row_labels(["server.keepalive", "load.keepalive", "load.duration_seconds"],
                                 {"server.keepalive": "keepalive", "load.keepalive": "keepalive",
                                  "load.duration_seconds": "duration (s)"})
    assert labels == {"server.keepalive": "server keepalive", "load.keepalive": "load keepalive",
                      "load.duration_seconds": "duration (s)"}


def test_the_load_form_puts_the_websocket_knobs_after_the_ones_every_run_uses(panel):
    titles = [box.children[0].value for box in panel.load_form.widget.children]
    assert titles[-1] == "<b>websocket</b>" and titles.index("<b>load</b>") < titles.index("<b>bounds</b>")
    assert list(panel.load_form.values())  # the knobs themselves are all still there
    thresholds = panel.load_form.controls["thresholds"].value_widget
    assert thresholds.layout.flex.startswith("1 1")  # takes the rest of its row, not 130 px


def test_a_float_knob_is_shown_as_a_box_can_hold_it(panel):
    panel.set(duration_seconds=3 * 1.2)  # 3.5999999999999996, cut at the box's edge
    assert panel.load_form.controls["duration_seconds"].value_widget.value == 3.6
    assert panel.load_spec().duration_seconds == 3.6

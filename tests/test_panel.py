"""The control panel, driven as a user would: set widgets, press buttons, read what it shows."""

from __future__ import annotations

import asyncio
import io

import pytest

from lab.notebook.panel import LabPanel
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


def test_bad_value_shows_a_message_and_the_next_run_works(panel):
    panel.load_form.controls["connections"].value_widget.value = 0
    assert panel.start_run() is None
    assert "connections" in panel.message.value and "allowed" in panel.message.value
    assert not panel.run_button.disabled

    panel.server_form.controls["read_buffer_bytes"].value_widget.value = 3
    assert panel.start_run() is None
    assert "read_buffer_bytes" in panel.message.value
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
    assert "404: " in message  # the status codes are named


def test_headline_and_progress_read_the_one_summary(panel):
    panel.load_form.controls["thresholds"].value_widget.value = "p50<10s, errors<1%"
    record = asyncio.run(press_run(panel))
    summary = panel.results[-1].summary
    assert record.summary.as_dict() == summary.as_dict()
    assert f"{summary.rps:,.0f} requests/s" in panel.message.value
    assert "✓ p50&lt;10s (measured " in panel.message.value and "#2e7d32" in panel.message.value
    assert f">done: {summary.requests} requests (0 errors)" in panel.progress_text.value
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

"""Live tuning: frames from the workers, the live view, markers for changes made during a run,
and the panel driven from code (issue 11)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import select
import time

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from rawhttp import Reader, connect, get

from lab.cli.records import describe
from lab.engine.live import FrameMeter
from lab.engine.recorder import Recorder
from lab.engine.spec import LoadSpec
from lab.errors import ConfigError
from lab.loadgen import start_load
from lab.measure.frames import MAX_FRAME_BYTES, Frame, bucket_of, merge_frames, percentile_ns
from lab.measure.samples import ErrorKind
from lab.notebook.live import LiveView
from lab.notebook.panel import LabPanel
from lab.records import plots
from lab.records.experiment import record_from_result
from lab.records.record import Marker, Record
from lab.records.store import RecordStore

CELL_TIMEOUT_SECONDS = 120


def frame_of(latencies_ns: np.ndarray, index: int = 0) -> Frame:
    histogram = np.bincount(bucket_of(latencies_ns), minlength=len(Frame(0).histogram))
    return Frame(index, requests=latencies_ns.size, ok=latencies_ns.size,
                 max_ns=int(latencies_ns.max()), histogram=histogram.astype(np.int64))


def test_a_frame_survives_the_wire_and_even_the_largest_fits_an_atomic_pipe_write():
    rng = np.random.default_rng(3)
    frame = frame_of(rng.lognormal(12, 1.5, 5000).astype(np.int64), index=7)
    frame.errors, frame.bad_status, frame.requests = 3, 2, frame.requests + 5
    back = Frame.decode(frame.encode())
    assert (back.index, back.requests, back.ok, back.errors, back.bad_status, back.max_ns) == \
        (7, 5005, 5000, 3, 2, frame.max_ns)
    assert np.array_equal(back.histogram, frame.histogram)
    every_bucket = Frame(0, histogram=np.ones_like(frame.histogram))
    assert len(every_bucket.encode()) == MAX_FRAME_BYTES < select.PIPE_BUF - 4  # 4: length prefix


def test_frames_merge_by_histogram_and_percentiles_stay_within_a_bucket():
    rng = np.random.default_rng(5)
    fast = rng.lognormal(11, 0.3, 9000).astype(np.int64)  # ~60 µs
    slow = rng.lognormal(17.5, 0.2, 1000).astype(np.int64)  # ~40 ms
    merged = merge_frames([frame_of(fast), frame_of(slow)])
    assert len(merged) == 1 and merged[0].requests == 10_000
    both = np.concatenate([fast, slow])
    for percent in (50, 90, 99):
        exact = np.percentile(both, percent, method="inverted_cdf")
        assert abs(percentile_ns(merged[0].histogram, percent) / exact - 1) < 0.05, percent
    # Averaging the two workers' p99s would say ~20 ms; the merged histogram says ~40 ms.
    assert merged[0].percentile_ms(99) > 30


def test_the_meter_puts_each_row_in_the_interval_it_completed_in():
    """Rows as a worker records them (completion times never decreasing), looked at in uneven
    batches: each interval's frame holds exactly its rows, errors counted apart."""
    rng = np.random.default_rng(11)
    recorder = Recorder()
    start, interval = 10**12, 100_000_000
    done = start + np.sort(rng.integers(0, 10 * interval, 3000))
    errors = rng.choice([0, 0, 0, 0, int(ErrorKind.BAD_STATUS), int(ErrorKind.TIMEOUT)], 3000)
    receiver, sender = multiprocessing.Pipe(duplex=False)
    meter = FrameMeter(recorder, sender, start_ns=start, interval_ns=interval)
    for row, (finished, error) in enumerate(zip(done.tolist(), errors.tolist(), strict=True)):
        recorder.add(finished - 5_000_000, finished - 4_000_000, -1, finished - 1000, finished,
                     0 if error == ErrorKind.TIMEOUT else 200, 10, error)
        if row % 250 == 0:
            meter.look(finished)
    sent = []
    while receiver.poll(0):
        sent.append(Frame.decode(receiver.recv_bytes()))
    frames = sent + [Frame.decode(data) for data in meter.rest()]
    assert len(sent) >= 8 and meter.dropped == 0
    index = (done - start) // interval
    assert [frame.index for frame in frames] == list(range(10))
    assert [frame.requests for frame in frames] == np.bincount(index, minlength=10).tolist()
    assert [frame.ok for frame in frames] == np.bincount(index[errors == 0], minlength=10).tolist()
    assert sum(frame.errors for frame in frames) == int((errors == ErrorKind.TIMEOUT).sum())
    assert all(frame.max_ns == 5_000_000 for frame in frames)  # open loop: from the intended send
    assert all(abs(frame.percentile_ms(50) / 5 - 1) < 0.04 for frame in frames)


def test_frames_from_two_workers_count_every_request_of_the_run(server):
    spec = LoadSpec(url=server.url + "/fast", connections=4, workers=2, duration_seconds=1.0)
    run = start_load(spec, live=True)
    frames: list[Frame] = []
    while not run.done():
        frames += run.live_frames()
        time.sleep(0.02)
    result = run.result()
    frames += run.live_frames()
    assert [frame.index for frame in frames] == list(range(len(frames)))  # one per interval, in order
    assert len(frames) >= 10  # 1 s in 100 ms intervals (plus the last, partial one)
    samples = result.samples
    ok = samples["error"] == ErrorKind.NONE
    assert sum(frame.requests for frame in frames) == samples.size
    assert sum(frame.ok for frame in frames) == int(ok.sum())
    assert set(np.unique(samples["worker"])) == {0, 1}  # both workers contributed
    assert run.frames_dropped == 0
    assert run.live_totals is not None and run.live_totals.requests == samples.size


def sockopts_on(sock, reader) -> dict:
    sock.sendall(get("/sockopts"))
    return json.loads(reader.response().body)


def test_nodelay_switched_during_a_run_reaches_an_open_connection_and_is_marked(server):
    """The issue's check: /sockopts on an already-open keep-alive connection reads the new
    value, and the change is a marker on the live view and in the run's record."""
    view = LiveView()
    spec = LoadSpec(url=server.url + "/fast", connections=2, duration_seconds=2.0)

    async def scenario() -> tuple[dict, dict, Record]:
        with connect(server.port) as sock:
            reader = Reader(sock)
            before = sockopts_on(sock, reader)
            run = start_load(spec, live=True)
            following = asyncio.ensure_future(view.follow(run, server, interval=0.05))
            while run.start_ns is None or not view.frames:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            server.reconfigure(nodelay=False)
            after = sockopts_on(sock, reader)  # the same connection, opened before the run
            await following
            record = record_from_result(run.result(), server_config=server.config,
                                        changes=view.changes_during(run, server))
        return before, after, record

    before, after, record = asyncio.run(scenario())
    assert before["nodelay"] is True and after["nodelay"] is False
    assert [marker["label"] for marker in view.markers] == ["nodelay → off"]
    assert 0.2 < view.markers[0]["t_s"] < 2.0  # during the run, after its first frame
    assert [marker.label for marker in record.markers] == ["nodelay → off"]
    assert 0 < record.markers[0].t_s < 2.0


def test_live_view_traits_follow_a_run(server):
    view = LiveView()
    run = start_load(LoadSpec(url=server.url + "/fast", connections=2, duration_seconds=1.0), live=True)
    asyncio.run(view.follow(run, server, interval=0.05))
    assert view.frames >= 10
    assert len(view.points) == view.frames
    t_s, p50, p99, peak, rate, errors = view.points[3]
    assert t_s == pytest.approx(0.4) and 0 < p50 <= p99 <= peak * 1.05 and rate > 0 and errors == 0
    assert view.stats["phase"] == "done" and view.stats["requests"] == run.result().samples.size
    assert view.markers == []
    assert "live.js" not in view._esm and "export default" in view._esm  # the module itself, no URL


def test_record_keeps_markers_and_old_records_without_them_still_load(synthetic_record, tmp_path):
    store = RecordStore(tmp_path / "data")
    marked = Record.create(samples=synthetic_record.samples, load_spec=synthetic_record.load_spec,
                           markers=[Marker(0.6, "nodelay → on"), Marker(0.3, "nodelay → off")])
    store.save(marked)
    back = store.load(marked.id)
    assert back == marked
    assert [(m.t_s, m.label) for m in back.markers] == [(0.3, "nodelay → off"), (0.6, "nodelay → on")]
    metadata = marked.metadata()
    del metadata["markers"]  # as written before markers existed
    assert Record.from_metadata(metadata, marked.samples).markers == ()


def test_show_says_what_changed_during_the_run(synthetic_record):
    marked = Record.create(samples=synthetic_record.samples, load_spec=synthetic_record.load_spec,
                           markers=[Marker(0.3, "nodelay → off"), Marker(0.61, "nodelay → on")])
    assert "changed during the run: nodelay → off at 0.30 s, nodelay → on at 0.61 s" in describe(marked)
    assert "changed during the run" not in describe(synthetic_record)


def test_the_timeline_draws_each_marker_as_a_labelled_line(synthetic_record):
    marked = Record.create(samples=synthetic_record.samples, load_spec=synthetic_record.load_spec,
                           markers=[Marker(0.3, "nodelay → off")])
    figure = plots.timeline(marked)
    top, bottom = figure.axes
    assert "nodelay → off" in [text.get_text() for text in top.texts]
    assert any(list(line.get_xdata()) == [0.3, 0.3] for line in bottom.lines)


# --- the panel, driven from code ------------------------------------------------------------

@pytest.fixture
def panel(tmp_path):
    lab_panel = LabPanel(store=RecordStore(tmp_path / "data"),
                         load={"connections": 2, "duration_seconds": 1.0})
    yield lab_panel
    lab_panel.close()


def test_panel_set_takes_values_as_typed_and_names_a_bad_one(panel):
    panel.set(nodelay="off", split_writes=True, linger_seconds="0", mode="open", rate="400",
              duration_seconds="1.5s", path="/fast")
    assert panel.server_form.values()["nodelay"] is False
    assert panel.server_form.values()["linger_seconds"] == 0
    assert panel.load_spec().rate == 400 and panel.load_spec().duration_seconds == 1.5
    with pytest.raises(ConfigError, match=r"^no_such_knob: is not a knob of the panel"):
        panel.set(no_such_knob=1)
    with pytest.raises(ConfigError, match=r"^nodelay: cannot read 'maybe'"):
        panel.set(nodelay="maybe")
    with pytest.raises(ConfigError, match=r"^read_buffer_bytes: .*out of range"):
        panel.set(read_buffer_bytes=3, nodelay="on")
    assert panel.server_form.values()["nodelay"] is False  # all or nothing: nodelay kept
    with pytest.raises(ConfigError, match=r"^port: is fixed"):
        panel.set(port=1)
    assert panel.server.config.nodelay is True  # set() only sets widgets; apply() applies


def test_panel_change_during_a_run_is_marked_live_and_in_the_record(panel):
    async def scenario() -> Record | None:
        panel.set(duration_seconds=1.5)
        task = panel.start_run()
        assert task is not None, panel.message.value
        while panel.live.frames < 4:
            await asyncio.sleep(0.05)
        panel.set(isolation="process")  # moving the server mid-run is refused, and shown so
        # answered beside Apply, where every server change answers, named by the box's label
        assert "not applied: server in: cannot move the server during a run" in panel.apply_message.value
        assert panel.isolation.value == "thread" == panel.server.isolation
        panel.set(nodelay=False)
        assert panel.apply()  # Apply works during a run
        return await task

    record = asyncio.run(scenario())
    assert record is not None, panel.message.value
    assert panel.server is not None and panel.server.config.nodelay is False
    assert [m["label"] for m in panel.live.markers] == ["nodelay → off"]
    assert [m.label for m in record.markers] == ["nodelay → off"]
    assert panel.live.frames >= 10


@pytest.mark.timeout(180)
def test_a_three_second_run_draws_at_least_ten_live_frames_in_a_real_kernel():
    cells = ["""
import asyncio
from lab.notebook.panel import LabPanel
panel = LabPanel(load={"connections": 2, "duration_seconds": 3.0})
panel.live
""", """
record = await panel.start_run()
assert record is not None, panel.message.value
print(panel.live.frames)
panel.close()
"""]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_SECONDS, kernel_name="python3")
    client.execute()
    frames = int(notebook.cells[-1].outputs[0]["text"].strip())
    assert frames >= 10, frames
    view = notebook.cells[0].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in view  # a widget, not printed output


def test_no_live_percentile_is_above_the_exact_maximum() -> None:
    from lab.measure.frames import Frame, add_to_histogram

    frame = Frame(index=0)
    # Just above the start of the bucket [46.14 ms, 48.23 ms), whose middle is 47.19 ms.
    latencies = np.array([46_140_000] * 999 + [46_139_000], dtype=np.int64)
    add_to_histogram(frame.histogram, latencies.copy())
    frame.ok = frame.requests = latencies.size
    frame.max_ns = int(latencies.max())
    assert frame.percentile_ms(99.9) <= frame.max_ms == 46.14


def test_the_live_view_says_its_percentiles_come_from_buckets_and_how_close_they_are() -> None:
    from lab.measure.frames import RESOLUTION
    from lab.notebook.live import ASSET

    caption = LiveView().caption
    assert "histogram buckets" in caption and f"within {RESOLUTION * 100:.1f} %" in caption
    assert "exact samples" in caption  # where the final figures come from instead
    script = ASSET.read_text(encoding="utf-8")
    assert 'caption.textContent = model.get("caption")' in script  # drawn under the figures


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_live_percentiles_are_within_the_stated_resolution_of_the_exact_ones(seed: int) -> None:
    from lab.measure.frames import RESOLUTION
    from lab.measure.stats import percentile

    rng = np.random.default_rng(seed)
    latencies = rng.lognormal(15, 1.2, 20_000).astype(np.int64)  # ~3 ms, a long tail
    frame = frame_of(latencies)
    for percent in (50, 90, 99, 99.9):
        exact_ms = percentile(latencies, percent) / 1e6  # the run's own figure: a real sample
        live_ms = frame.percentile_ms(percent)
        assert abs(live_ms / exact_ms - 1) <= RESOLUTION, (percent, live_ms, exact_ms)


def test_the_live_running_figures_mark_a_percentile_too_few_requests_support() -> None:
    from lab.measure.figures import UNSUPPORTED
    from lab.measure.frames import RESOLUTION
    from lab.notebook.live import _running

    frame = frame_of(np.full(200, 5_000_000, dtype=np.int64))
    assert _running(frame, 99.9) == UNSUPPORTED  # 200 requests: p99.9 would be the max
    assert _running(frame, 99) == UNSUPPORTED  # p99 needs 500
    assert _running(frame, 50) == pytest.approx(5.0, rel=RESOLUTION)


def test_an_all_404_run_ends_in_the_view_with_its_errors_and_no_partial_last_rate(server):
    view = LiveView()
    run = start_load(LoadSpec(url=server.url + "/nope", connections=2, duration_seconds=1.0), live=True)
    asyncio.run(view.follow(run, server, interval=0.05))
    assert view.stats["phase"] == "done" and view.stats["errors"] == view.stats["requests"] > 0
    assert view.stats["p50_ms"] is None  # no success: the script must draw None as a dash
    end_s = (run.result().end_ns - run.start_ns) / 1e9
    full = [point for point in view.points if point[0] <= end_s + 0.005]
    after = [point for point in view.points if point[0] > end_s + 0.005]
    assert full and all(point[5] == point[4] > 0 for point in full)  # every request an error
    # The interval the run ended in holds a part of one: no rate, not a drop to ~0 at the end.
    assert all(point[4] is None and point[5] is None for point in after)


# The script's own helpers, run by Node on the values Python sends (a NaN arrives as null).
LIVE_SCRIPT_CHECKS = """
import { statsText, niceCeiling, logGridlines } from %s;
const stats = { phase: "done", elapsed_s: 1, requests: 14040, errors: 14040, rps: 14039.1,
                p50_ms: null, p99_ms: null, p99_9_ms: null, max_ms: null };
console.log(JSON.stringify({
  stats: statsText(stats),
  ceilings: [75110, 110, 100, 3, 0].map(niceCeiling),
  lines: logGridlines(0, 2, 90).map((line) => line.value),
  crowded: logGridlines(-2, 3, 20).map((line) => line.value),
}));
"""


def test_the_live_script_draws_a_failed_run_and_reads_its_axes():
    import shutil
    import subprocess

    from lab.notebook.live import ASSET

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node is not installed (scripts/setup.sh --system installs it)")
    script = LIVE_SCRIPT_CHECKS % json.dumps(ASSET.as_uri())
    answer = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                            text=True, timeout=30, check=True)
    checked = json.loads(answer.stdout)
    assert checked["stats"] == ("done 1.00 s: 14,040 requests, 14,039 req/s, 14,040 errors | "
                                "p50 –, p99 –, p99.9 –, max –")
    assert checked["ceilings"] == [100_000, 200, 100, 5, 1]  # never an odd top like 75,110/s
    assert checked["lines"] == [1, 2, 5, 10, 20, 50, 100]  # 44 ms lies between 20 and 50
    assert checked["crowded"] == [0.01, 0.1, 1, 10, 100, 1000]  # decades only when tight

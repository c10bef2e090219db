"""The live view: a run's latency drawn while it happens, with the knobs changed on the way.

    view = LiveView()
    view                                    # shows an empty canvas
    run = lab.start_load(spec, live=True)   # workers send a frame per 100 ms
    await view.follow(run, server)          # draws until the run ends; markers from server

Any :class:`~lab.engine.run.Run` draws the same way: on this machine's processes or on a Dask
cluster (``start_load(spec, live=True, cluster="local:2")``).

Why an anywidget: the view is updated from a task on the kernel's loop, outside any cell, and
ipykernel 7 drops output printed from tasks and threads -- so no ``Output`` capture and no
re-rendered matplotlib figures. The data goes through synced traits (a few KB per update), and a
small ES module (``assets/live.js``, shipped in the package: the lab works offline) draws them on
a canvas at most once per animation frame. bqplot would also do, but is a larger dependency
whose log axes and annotations need more code than the canvas does.

What is drawn, per interval of the run (100 ms): p50, p99 and the maximum latency (log axis),
requests/s and errors/s; above it the running figures (from every frame so far, merged by
histogram); under them a caption that says the live percentiles come from histogram buckets,
within ``RESOLUTION`` of the exact figures the run reports at its end (which also leave out the
warm-up); and a dashed line labelled ``nodelay → off`` wherever a knob was changed on the
server during the run (:attr:`lab.server.ServerHandle.changes`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from lab.loadgen import Run
from lab.measure import figures
from lab.measure.frames import BUCKETS_PER_OCTAVE, RESOLUTION, Frame
from lab.server import ConfigChange, ServerHandle
from lab.units import NS_PER_S

ASSET = Path(__file__).resolve().parent / "assets" / "live.js"
UPDATE_SECONDS = 0.15  # 6-7 updates a second; each carries the 1-2 frames that closed meanwhile
# An interval ending later than this share of an interval after the run's end is partial.
PARTIAL_TOLERANCE = 0.05
WINDOW_SECONDS = 30.0  # the time axis shows the last 30 s; longer runs scroll
# Why the live figures and the run's final ones differ: said in the view, from the histogram's
# own declaration of its resolution.
CAPTION = (f"live percentiles: histogram buckets ({BUCKETS_PER_OCTAVE} per power of two), each "
           f"within {RESOLUTION * 100:.1f} % of the exact value; the run's final figures come "
           "from the exact samples of its measured window (after any warm-up). An interval's p99 "
           f"with fewer than {figures.samples_needed(99):,} requests in it is its max or next to it")


class LiveView(anywidget.AnyWidget):
    """A live latency timeline. ``frames``: frames received and put on the view in the current run;
    ``markers``: the changes marked in it; ``redraws``: canvas redraws the browser did."""

    _esm = ASSET.read_text(encoding="utf-8")

    title = traitlets.Unicode("live view: no run yet").tag(sync=True)
    caption = traitlets.Unicode(CAPTION).tag(sync=True)
    # [t_s (end of interval), p50_ms, p99_ms, max_ms, requests_per_s, errors_per_s]; NaN as None
    points = traitlets.List(trait=traitlets.List()).tag(sync=True)
    markers = traitlets.List(trait=traitlets.Dict()).tag(sync=True)
    stats = traitlets.Dict().tag(sync=True)
    frames = traitlets.Int(0).tag(sync=True)
    redraws = traitlets.Int(0).tag(sync=True)  # set by the browser
    window_seconds = traitlets.Float(WINDOW_SECONDS).tag(sync=True)
    span_seconds = traitlets.Float(0.0).tag(sync=True)  # the run's planned length (time axis)
    reveals = traitlets.Int(0).tag(sync=True)  # each increase scrolls the view into the window

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._run: Run | None = None
        self._changes_seen = 0
        self._start_ns = 0

    def scroll_into_view(self) -> None:
        """Scroll the browser's window to the view (centred, with what is above it in a panel
        -- Run, Stop, the progress line -- in sight): for a notebook that starts a run from
        code, since JupyterLab's Run All leaves the window at the notebook's last cell."""
        self.reveals += 1

    # --- following a run --------------------------------------------------------------------

    def begin(self, run: Run, server: ServerHandle | None = None) -> None:
        """Start drawing ``run`` (started with ``live=True``): clears the last run's picture."""
        self._run = run
        # Changes made before this call belong to earlier runs.
        self._changes_seen = len(server.changes) if server is not None else 0
        self._start_ns = 0
        spec = run.spec
        load = (f"{spec.rate:,.0f} requests/s open loop" if spec.mode == "open" and spec.rate
                else f"{spec.connections} connections, {spec.mode} loop")
        self.title = f"live: {spec.url} -- {load}"
        self.span_seconds = spec.warmup_seconds + spec.duration_seconds
        self.points = []
        self.markers = []
        self.frames = 0
        self.stats = {"phase": "starting"}

    def update(self, server: ServerHandle | None = None) -> None:
        """Take the frames and changes that came since the last call and push them to the view."""
        run = self._run
        if run is None:
            return
        frames = run.live_frames()
        if not self._start_ns and run.start_ns is not None:
            self._start_ns = run.start_ns
        if server is not None and self._start_ns:
            self._mark(server.changes[self._changes_seen:])
            self._changes_seen = len(server.changes)
        if frames:
            interval_s = run.live_interval_s or 0.1
            new = [_point(frame, interval_s) for frame in frames]
            keep = int(self.window_seconds / interval_s) + 1
            self.points = ([*self.points, *new])[-keep:]
            self.frames += len(frames)
        self.stats = self._stats(run)

    def end(self, server: ServerHandle | None = None) -> None:
        """The run is over: the last frames, the last changes, the final figures."""
        self.update(server)
        run, self._run = self._run, None
        if run is not None and run.done() and self._start_ns:
            end_s = (run.result().end_ns - self._start_ns) / NS_PER_S
            self.points = _without_partial_rates(self.points, end_s, run.live_interval_s or 0.1)

    async def follow(self, run: Run, server: ServerHandle | None = None, *,
                     interval: float = UPDATE_SECONDS) -> None:
        """Draw ``run`` until it ends (a task on the kernel's loop; never a thread)."""
        self.begin(run, server)
        while not run.done():
            self.update(server)
            await asyncio.sleep(interval)
        self.end(server)

    def _mark(self, changes: list[ConfigChange]) -> None:
        fresh = [{"t_s": round((change.at_ns - self._start_ns) / NS_PER_S, 3), "label": change.label}
                 for change in changes if change.at_ns >= self._start_ns]
        if fresh:
            self.markers = [*self.markers, *fresh]

    def _stats(self, run: Run) -> dict[str, Any]:
        totals = run.live_totals
        progress = run.progress()
        if totals is None or not totals.requests:
            return {"phase": progress.phase}
        return {"phase": progress.phase, "elapsed_s": round(progress.elapsed_s, 2),
                "requests": totals.requests, "errors": totals.errors + totals.bad_status,
                "rps": round(progress.rps, 1),
                **{key: _running(totals, percent) for key, percent in LIVE_PERCENTILES.items()},
                "max_ms": _finite(totals.max_ms)}

    # --- for a record -------------------------------------------------------------------------

    def changes_during(self, run: Run, server: ServerHandle) -> list[tuple[int, str]]:
        """(perf_counter_ns, label) of every change made on ``server`` since ``run`` began:
        what a record keeps as its markers."""
        start = run.start_ns
        if start is None:
            return []
        return [(change.at_ns, change.label) for change in server.changes if change.at_ns >= start]


# The running percentiles of the view's text line, by stats key.
LIVE_PERCENTILES = {"p50_ms": 50.0, "p99_ms": 99.0, "p99_9_ms": 99.9}


def _running(totals: Frame, percent: float) -> float | str | None:
    """A running percentile, or figures.UNSUPPORTED while too few requests lie beyond it (the
    rule every view of a run follows: lab.measure.figures.MIN_SAMPLES_BEYOND)."""
    if not figures.supported(percent, totals.ok):
        return figures.UNSUPPORTED
    return _finite(totals.percentile_ms(percent))


def _finite(value: float) -> float | None:
    return None if value != value else round(value, 4)  # NaN (no successful request) -> None


def _without_partial_rates(points: list[list[Any]], end_s: float,
                           interval_s: float) -> list[list[Any]]:
    """``points`` with no requests/s or errors/s for an interval the run ended inside: its
    count covers part of the interval (the last requests draining, or a Stop), and divided by
    the whole interval it reads as a collapse at the end of every run. Its latencies stay."""
    partial = end_s + PARTIAL_TOLERANCE * interval_s
    return [[*point[:4], None, None] if point[0] > partial else point for point in points]


def _point(frame: Frame, interval_s: float) -> list[float | None]:
    return [round((frame.index + 1) * interval_s, 3), _finite(frame.percentile_ms(50)),
            _finite(frame.percentile_ms(99)), _finite(frame.max_ms),
            round(frame.requests / interval_s, 1),
            round((frame.errors + frame.bad_status) / interval_s, 1)]

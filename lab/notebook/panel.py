"""The notebook control panel: server knobs, load knobs, Run, and every run's latency inline.

    import lab
    panel = lab.panel()        # starts a server in a background thread of the kernel
    panel                       # shows the widgets

    # or your own server, which the lab did not start, behind an emulated network path:
    panel = lab.panel(to="127.0.0.1:8000", network_path="delay=20ms loss=1%")

Every knob widget is generated from ``ServerConfig`` and ``LoadSpec`` (lab/notebook/widgets.py), so
nothing here defines a knob. The load always runs in processes of its own and the panel
follows it from a task on the kernel's event loop, so the kernel stays free during a run and
widgets are only touched from the kernel's own thread (ipykernel 7 does not route output
from other threads).
"""

from __future__ import annotations

import asyncio
import html
import io
import re
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
from matplotlib.figure import Figure

from lab.engine.result import LoadResult
from lab.engine.spec import LoadSpec
from lab.errors import ConfigError, LabError
from lab.http.asgi import AsgiApp
from lab.http.config import ServerConfig
from lab.loadgen import LoadProgress, Run, start_load
from lab.measure import figures as catalogue
from lab.measure import report
from lab.measure.frames import Frame
from lab.measure.thresholds import Outcome
from lab.netpath import Path as NetworkPath
from lab.netpath import PathInFront, start_path_to
from lab.netpath.front import check_listening, parse_target
from lab.netpath.spec import Target
from lab.notebook.control import EmulatedLink, set_knobs
from lab.notebook.live import LiveView
from lab.notebook.widgets import KnobForm
from lab.records import compare, plots
from lab.records.experiment import record_from_result
from lab.records.export import default_export_path, export
from lab.records.html_report import write_report
from lab.records.record import Record
from lab.records.store import RecordStore
from lab.server import ServerHandle, format_url, start_server

WEBSOCKET_PREFIX = "/ws/"  # a path under it is loaded with WebSocket messages (ws://)
# The load's groups shown last: only a path under WEBSOCKET_PREFIX uses the WebSocket knobs,
# and above connections and duration they hide the knobs every run uses.
LATER_LOAD_GROUPS = ("websocket",)
DEFAULT_LOAD = {"connections": 10, "duration_seconds": 3.0}
PROGRESS_INTERVAL_SECONDS = 0.15  # also how often the live view is redrawn
EXPORT_FORMATS = ("csv", "parquet", "json", "hgrm")
ERROR_COLOUR, OK_COLOUR = compare.FAILED_COLOUR, "#2e7d32"
INVALID_CLASS = "lab-invalid"  # a field whose value was refused (PANEL_CSS marks it)
# What choosing the open loop puts in an empty rate box: a rate any server here keeps up with,
# a start to change rather than 0.1 requests/s (the box's minimum), which measures nothing.
OPEN_LOOP_START_RATE = 100.0
# Sized for JupyterLab's output area at a 1400 px window with the file browser open (about
# 880 px wide): two plots side by side, each drawn at the size it is shown (text stays legible),
# and shrunk, never cut, where the area is narrower.
PLOT_SIZE_INCHES, PLOT_DPI = (5.4, 3.4), 80
OVERLAY_SIZE_INCHES = (10.6, 4.6)
# Scoped to the panel: JupyterLab's widget tabs have a fixed width that cuts titles short
# ("listene"), the server's ten knob groups do not fit one row of tabs (they wrap), and tables
# and pictures must shrink with the output area instead of overflowing.
PANEL_CSS = """<style>
.lab-panel .lm-TabBar-tab { flex: 0 0 auto !important; min-width: 0 !important; max-width: none !important; }
.lab-panel .lm-TabBar { min-height: var(--jp-private-horizontal-tab-height, 24px); height: auto !important; }
.lab-panel .lm-TabBar-content { flex-wrap: wrap; }
.lab-panel .lab-table { border-collapse: collapse; font-size: 12px; margin: 4px 0; }
.lab-panel .lab-table th, .lab-panel .lab-table td { padding: 2px 6px; text-align: right;
  border: 1px solid var(--jp-border-color2, #ccc); overflow-wrap: anywhere; }
.lab-panel .lab-table thead th { text-align: center; }
.lab-panel img { max-width: 100%; height: auto; }
.lab-panel .widget-html-content { white-space: normal; overflow-wrap: anywhere; }
.lab-panel .lab-invalid .widget-label { color: #b00020; font-weight: bold; }
.lab-panel .lab-invalid input, .lab-panel .lab-invalid select { outline: 2px solid #b00020; }
</style>"""


def summary_table(result: LoadResult) -> pd.DataFrame:
    """The figures of one run, in milliseconds, as text to read (lab.measure.report)."""
    return report.last_run_table(result.summary)


def headline(result: LoadResult) -> str:
    """One line of the run's summary: the same figures bench, runs and show print."""
    return report.headline(result.summary, stopped_early=result.stopped_early)


def verdict_line(result: LoadResult) -> str | None:
    """Why the run failed (no success, a problem, a threshold), or None when it passed."""
    return result.verdict()[1]


def progress_line(progress: LoadProgress, live: Frame | None = None) -> str:
    """Where a run is, in a line: ``running: 1,200 requests, 0 failed, 2,400 req/s, 2.5 s
    left``. Failed counts bad statuses too, as the run's summary does: while running they come
    from the live frames (the workers' progress counters leave them out); once done, the
    progress is the summary itself."""
    failures = progress.errors
    if progress.phase != "done" and live is not None:
        failures = max(failures, live.errors + live.bad_status)
    line = f"{progress.phase}: {progress.requests:,} requests, {failures:,} failed, {progress.rps:,.0f} req/s"
    return line if progress.phase == "done" else f"{line}, {progress.seconds_left:.1f} s left"


def _nothing_succeeded_yet(run: Run) -> bool:
    live = run.live_totals
    return live is not None and live.requests > 0 and live.ok == 0


def failed(result: LoadResult) -> bool:
    """The run failed by the run's own verdict (no success, a threshold) or had a problem."""
    return verdict_line(result) is not None


def coloured(text: str, *, error: bool = False) -> str:
    """``text`` as HTML in the panel's colours: red for a failure, green otherwise."""
    return f'<span style="color:{ERROR_COLOUR if error else OK_COLOUR}">{html.escape(text)}</span>'


def figure_image(figure: Figure, *, size: tuple[float, float] = PLOT_SIZE_INCHES) -> widgets.Image:
    """A figure redrawn at ``size`` as a PNG shown at its own width, or narrower if the output
    area is (``max-width: 100%``): never wider than what shows it."""
    figure.set_size_inches(*size)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=PLOT_DPI)
    width = round(size[0] * PLOT_DPI)
    return widgets.Image(value=png.getvalue(), format="png",
                         layout=widgets.Layout(width=f"{width}px", max_width="100%", height="auto"))


def reach_outside_server(target: Target,
                         network_path: NetworkPath | str | None) -> tuple[str, PathInFront | None]:
    """The URL of a server on this machine that the lab did not start, through an emulated
    path in front of it when ``network_path`` asks for one (a ConfigError naming ``to`` if
    nothing listens there)."""
    if network_path is not None:
        front = start_path_to(network_path, target)
        return front.url, front
    host, port = parse_target(target)
    check_listening(host, port)
    return format_url(host, port), None


class LabPanel:
    """Widgets for one tuning session: a server, its knobs, the load, and the runs so far."""

    def __init__(self, server: ServerHandle | None = None, *, isolation: str = "thread",
                 path: str = "/fast", store: RecordStore | None = None,
                 load: dict[str, Any] | None = None,
                 network_path: NetworkPath | str | None = None, cluster: str | None = None,
                 app: AsgiApp | str | None = None, to: Target | None = None) -> None:
        if to is not None and (server is not None or app is not None):
            raise ConfigError("to", "a panel drives a server the lab starts (server=, app=) or one "
                              "it did not start (to=), not both")
        if to is not None and isolation != "thread":
            raise ConfigError("isolation", "the server at `to` was not started by the lab; where "
                              "it runs is its own")
        self._owns_server = server is None and to is None
        # app: an ASGI app served instead of the demo routes ("module:attribute" keeps it
        # when the isolation is switched to processes)
        self._app = app
        # to: a server on this machine the lab did not start (uvicorn, nginx, a Go service):
        # the panel loads it, through an emulated path if network_path says so. Its settings
        # are its own, so the panel shows no server knobs for it.
        self.server: ServerHandle | None = None
        self.front: PathInFront | None = None
        if to is not None:
            self._outside_url, self.front = reach_outside_server(to, network_path)
        else:
            # network_path: the server behind an emulated path (lab/netpath; needs root)
            self.server = server or start_server(isolation=isolation,  # type: ignore[arg-type]
                                                 path=network_path, app=app)
        self.store = store
        self.records: list[Record] = []
        self.results: list[LoadResult] = []
        self.figures: list[Figure] = []  # the figures of the last run, for a look or a test
        self.run_task: asyncio.Task[Record | None] | None = None
        self._run: Run | None = None
        self._load_template = LoadSpec(url=self._target(path), **{**DEFAULT_LOAD, **(load or {})})
        self.live = LiveView()  # the running load, drawn as it happens (lab/notebook/live.py)
        self._marked: list[widgets.Widget] = []  # rows marked for a refused value
        self._runs_made = 0  # this session's runs ("run 1", ...); loaded runs keep their names
        self._build_widgets(path, cluster)

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the server the load goes to (through the path, if any)."""
        return self.server.url if self.server is not None else self._outside_url

    @property
    def network_link(self) -> EmulatedLink | None:
        """The emulated path in front of the server, if there is one."""
        return self.server.path if self.server is not None else self.front

    # --- layout ---------------------------------------------------------------------------

    def _build_widgets(self, path: str, cluster: str | None) -> None:
        # no server knobs for a server the lab did not start: they would change nothing
        self.server_form = KnobForm(ServerConfig, self.server.config, tabs=True) \
            if self.server is not None else None
        self.load_form = KnobForm(LoadSpec, self._load_template, later_groups=LATER_LOAD_GROUPS)
        # the "network path" knobs, from lab.netpath.Path, when the server is behind one
        emulated = self.network_link
        self.network_path_form = KnobForm(NetworkPath, emulated.spec) if emulated else None
        self.isolation = widgets.Dropdown(options=["thread", "process"],
                                          value=self.server.isolation if self.server else "thread",
                                          description="server in", layout=widgets.Layout(width="220px"))
        self.path = widgets.Text(value=path, description="path", layout=widgets.Layout(width="220px"))
        # Where the generator runs: empty for this machine's processes, else a Dask cluster
        # (local:N starts one for the run, tcp://HOST:PORT is a running scheduler), as --cluster.
        self.cluster = widgets.Text(value=cluster or "", description="cluster",
                                    placeholder="this machine (or local:2)",
                                    tooltip="empty: this machine's processes; local:N: an embedded Dask "
                                            "cluster of N workers; tcp://HOST:PORT: a running scheduler",
                                    layout=widgets.Layout(width="100%", max_width="360px"))
        self.apply_button = widgets.Button(description="Apply", icon="check",
                                           tooltip="reconfigure the running server")
        # Apply answers beside its button, not in the message line under both columns
        self.apply_message = widgets.HTML("", layout=widgets.Layout(flex="1 1 0%", min_width="0"))
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.progress = widgets.FloatProgress(value=0, min=0, max=1,
                                              layout=widgets.Layout(width="95%"))
        self.progress_text = widgets.HTML("")  # HTML wraps; a Label cuts the line short
        self.message = widgets.HTML("")
        self.server_status = widgets.HTML("")
        # HTML and Image widgets rather than Output widgets: results arrive from a task on the
        # kernel's loop, outside any cell, where Output capture has no cell to attach to.
        self.summary_view = widgets.HTML("")
        self.plots_view = widgets.HBox([], layout=widgets.Layout(flex_flow="row wrap"))
        self.runs_view = widgets.HTML("")
        # Fixed flex bases, not the content's width: a long answer beside Save/Export or a long
        # run label must wrap in its own box, not widen it and push the buttons onto a new row.
        self.overlay_pick = widgets.SelectMultiple(
            options=[], description="overlay", layout=widgets.Layout(width="auto", flex="1 1 300px",
                                                                     min_width="0", height="90px"))
        self.overlay_button = widgets.Button(description="Overlay", icon="layer-group")
        self.overlay_view = widgets.HBox([])
        self.keep_message = widgets.HTML("")  # Save/Export say what they did beside the buttons
        self.export_format = widgets.Dropdown(options=EXPORT_FORMATS, value="csv",
                                              layout=widgets.Layout(width="100px"))
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        # A saved run (bench --save, an earlier session) brought in beside this session's runs:
        # a name, an id, a prefix of one or "latest", as the CLI takes them.
        self.saved_pick = widgets.Combobox(options=[], placeholder="saved run: name or id",
                                           ensure_option=False,
                                           layout=widgets.Layout(flex="1 1 160px", min_width="0"))
        self.load_button = widgets.Button(description="Load", icon="folder-open",
                                          tooltip="bring a saved run into this session's runs",
                                          layout=widgets.Layout(flex="0 0 auto", width="auto"))
        self.export_button = widgets.Button(description="Export", icon="download", disabled=True)
        self.report_button = widgets.Button(description="Report", icon="file-code", disabled=True,
                                            tooltip="the picked runs (or all) as one HTML file to share")

        self.apply_button.on_click(lambda _: self.apply())
        self.run_button.on_click(lambda _: self.start_run())
        self.stop_button.on_click(lambda _: self.stop_run())
        self.save_button.on_click(lambda _: self.save())
        self.export_button.on_click(lambda _: self.export())
        self.report_button.on_click(lambda _: self.report())
        self.overlay_button.on_click(lambda _: self.overlay())
        self.load_button.on_click(lambda _: self.load_run(self.saved_pick.value))
        self.isolation.observe(lambda _: self.apply(), names="value")
        self.load_form.controls["mode"].value_widget.observe(self._mode_chosen, names="value")

        path_rows = [self.network_path_form.widget] if self.network_path_form else []
        server_rows = [self.isolation, self.server_form.widget] if self.server_form else []
        if self.server is None:
            self.apply_button.tooltip = "change the emulated network path"
        column = widgets.Layout(flex="1 1 360px", min_width="0")
        server_box = widgets.VBox([widgets.HTML("<h4>Server</h4>"), self.server_status,
                                   *server_rows, *path_rows,
                                   widgets.HBox([self.apply_button, self.apply_message])],
                                  layout=column)
        load_box = widgets.VBox([widgets.HTML("<h4>Load</h4>"), self.path, self.cluster,
                                 self.load_form.widget,
                                 widgets.HBox([self.run_button, self.stop_button]),
                                 self.progress, self.progress_text], layout=column)
        keeping = widgets.VBox([self.overlay_button,
                                widgets.HBox([self.save_button, self.export_format, self.export_button,
                                              self.report_button]),
                                widgets.HBox([self.saved_pick, self.load_button]),
                                self.keep_message], layout=widgets.Layout(flex="1 1 300px", min_width="0"))
        results_box = widgets.VBox([
            widgets.HTML("<h4>Last run</h4>"), self.summary_view, self.plots_view,
            widgets.HTML("<h4>Runs of this session</h4>"), self.runs_view,
            widgets.HBox([self.overlay_pick, keeping], layout=widgets.Layout(flex_flow="row wrap")),
            self.overlay_view])
        top = widgets.HBox([server_box, load_box], layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([widgets.HTML(PANEL_CSS), top, self.message, self.live, results_box])
        self.widget.add_class("lab-panel")
        self._show_server_status()
        self._list_saved_runs()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- messages -------------------------------------------------------------------------

    def _say(self, text: str, *, error: bool = False, near: widgets.HTML | None = None) -> None:
        """Show ``text`` in the panel's message line, or in ``near`` (beside the buttons that
        did it, so the answer appears where the user looks)."""
        (near or self.message).value = coloured(text, error=error)

    @property
    def message_text(self) -> str:
        """The message line as plain text (its widget holds HTML, for the colour): what a
        notebook prints."""
        return html.unescape(re.sub(r"<[^>]*>", "", self.message.value))

    def _show_server_status(self) -> None:
        link = self.network_link
        behind = f", behind {link.spec}" if link is not None else ""
        if self.server is not None:
            where = f"{self.server.isolation}{behind}"
        else:
            where = f"not started by the lab: its settings are its own{behind}"
        self.server_status.value = f"<code>{html.escape(self.base_url)}</code> ({html.escape(where)})"

    # --- server ---------------------------------------------------------------------------

    def set(self, **knobs: Any) -> None:
        """Set server, load or network-path knobs by name, as typed (``nodelay="off"``,
        ``rate=500``, ``delay_ms="20ms"``); Apply and Run then use them. A bad name or value
        raises one ConfigError naming it, and nothing is changed."""
        set_knobs(self, knobs)

    def apply(self) -> bool:
        """Reconfigure the server as the widgets say; False (and a message) if a value is bad.

        During a run too: the change is marked on the live view and in the run's record.
        """
        return self._apply(near=self.apply_message)

    def _apply(self, *, near: widgets.HTML) -> bool:
        self._unmark()
        if self.server is None or self.server_form is None:
            return self._apply_path_only(near)
        try:
            changes = self.server_form.changes_from(self.server.config)
            if self.isolation.value != self.server.isolation:
                if self._run is not None:
                    raise ConfigError("isolation", "cannot move the server during a run")
                self._switch_isolation(self.server.config.replace(**changes))
                self._say(f"server restarted in a {self.isolation.value}", near=near)
                return True
            if changes:
                self.server.reconfigure(**changes)
                self._say("applied " + ", ".join(f"{k}={v!r}" for k, v in changes.items()), near=near)
            self._apply_network_path(near)
            return True
        except (ConfigError, OSError, RuntimeError) as error:
            self._say(f"not applied: {self._refusal(error)}", error=True, near=near)
            self.server_form.show(self.server.config)
            self._show_network_path()
            self.isolation.value = self.server.isolation  # a refused move shows where it still is
            return False
        finally:
            self._show_server_status()

    def _apply_path_only(self, near: widgets.HTML) -> bool:
        """Apply for a server the lab did not start: only the network path can change."""
        try:
            self._apply_network_path(near)
            return True
        except (ConfigError, OSError, RuntimeError) as error:
            self._say(f"not applied: {self._refusal(error)}", error=True, near=near)
            self._show_network_path()
            return False
        finally:
            self._show_server_status()

    def _show_network_path(self) -> None:
        """The network-path widgets as the running path is (after a refused change)."""
        link = self.network_link
        if self.network_path_form is not None and link is not None:
            self.network_path_form.show(link.spec)

    # --- a refused value: named as the panel shows it, and marked ------------------------

    def _field(self, option: str) -> tuple[str, widgets.Widget] | None:
        """The label and the row of the widget that sets ``option``, if the panel has one."""
        forms = [self.server_form, self.load_form, self.network_path_form]
        for form in forms:
            if form is not None and option in form.controls:
                control = form.controls[option]
                return control.label, control.widget
        boxes: dict[str, widgets.Widget] = {"path": self.path, "cluster": self.cluster,
                                            "isolation": self.isolation}
        return (boxes[option].description, boxes[option]) if option in boxes else None

    def _refusal(self, error: Exception) -> str:
        """Why a value was refused, naming the field by the label the user sees
        (``duration (s): -1.0 is out of range``), and marking that field."""
        if not isinstance(error, ConfigError):
            return str(error)
        field = self._field(error.option)
        if field is None:
            return str(error)
        label, row = field
        row.add_class(INVALID_CLASS)
        self._marked.append(row)
        return f"{label}: {error.message}"

    def _unmark(self) -> None:
        for row in self._marked:
            row.remove_class(INVALID_CLASS)
        self._marked = []

    def _mode_chosen(self, change: dict[str, Any]) -> None:
        """The open loop needs a rate: choosing it ticks the rate's box (with a rate to start
        from if the box holds none a user typed)."""
        rate = self.load_form.controls["rate"]
        if change["new"] != "open" or rate.enabled is None or rate.enabled.value:
            return
        rate.enabled.value = True
        if not rate.value_widget.value or rate.value_widget.value <= (rate.spec.minimum or 0):
            rate.value_widget.value = OPEN_LOOP_START_RATE

    def _apply_network_path(self, near: widgets.HTML) -> None:
        """Hand changed "network path" knobs to the running relay (ConfigError if bad)."""
        emulated = self.network_link
        if self.network_path_form is None or emulated is None:
            return
        wanted = self.network_path_form.build(emulated.spec)
        if wanted != emulated.spec:
            emulated.update(wanted)
            self._say(f"network path now {wanted}", near=near)

    def _switch_isolation(self, config: ServerConfig) -> None:
        assert self.server is not None  # a server the lab did not start has no isolation box
        port = self.server.port
        emulated = self.server.path.spec if self.server.path is not None else None
        self.server.stop()
        self.server = start_server(config.replace(port=port), isolation=self.isolation.value,
                                   path=emulated, app=self._app)
        self._owns_server = True

    # --- runs -----------------------------------------------------------------------------

    def load_spec(self) -> LoadSpec:
        """The load the widgets describe (raises ConfigError naming a bad value)."""
        values = self.load_form.values()
        if values["mode"] == "closed":
            values["rate"] = None
        elif values["rate"] is None:
            raise ConfigError("rate", "the open loop needs a rate: tick the box and give requests/s")
        path = self.path.value.strip() or "/"
        if not path.startswith("/"):
            raise ConfigError("path", f"{path!r} must start with '/'")
        return self._load_template.replace(url=self._target(path), **values)

    def _target(self, path: str) -> str:
        """The server's URL for ``path``: ws:// for the WebSocket routes, http:// otherwise."""
        url = self.base_url + path
        return url.replace("http://", "ws://", 1) if path.startswith(WEBSOCKET_PREFIX) else url

    def start_run(self) -> asyncio.Task[Record | None] | None:
        """What Run does: apply the server knobs, start the load, follow it to the end.

        Returns the task following the run (await it for the record), or None when a value
        was bad (the message says which).
        """
        if self._run is not None:
            self._say("a run is going already", error=True)
            return None
        # A refused run is no run: the last run's red bar and "done: ..." line would read as
        # this one's result.
        if not self._apply(near=self.message):
            self._clear_progress()
            return None
        try:
            spec = self.load_spec()
            cluster = self.cluster.value.strip() or None  # checked before a cluster starts
            self._run = start_load(spec, live=True, cluster=cluster)
        except (LabError, OSError) as error:
            self._say(f"not started: {self._refusal(error)}", error=True)
            self._clear_progress()
            return None
        self._set_running(True)
        self.live.begin(self._run, self.server)
        where = f" on the Dask cluster {cluster}" if cluster is not None else ""
        self._say(f"running {spec.mode} loop against {spec.url}{where} for "
                  f"{spec.warmup_seconds + spec.duration_seconds:g} s")
        self.run_task = asyncio.get_event_loop().create_task(self._follow(self._run))
        return self.run_task

    def stop_run(self) -> None:
        """End the current run early; what it measured so far is kept."""
        if self._run is not None:
            self._run.stop()
            self._say("stopping; the samples so far are kept")

    async def _follow(self, run: Run) -> Record | None:
        try:
            while not run.done():
                self._show_progress(run)
                self.live.update(self.server)
                await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
            result = run.result()
            self._show_progress(run)
            self.live.end(self.server)
            changes = self.live.changes_during(run, self.server) if self.server is not None else []
            return self._finish(result, changes)
        except Exception as error:  # the panel must stay usable whatever the run did
            self._say(f"the run failed: {error}", error=True)
            return None
        finally:
            self._run = None
            self._set_running(False)

    def _show_progress(self, run: Run) -> None:
        progress = run.progress()
        planned = run.spec.warmup_seconds + run.spec.duration_seconds
        self.progress.value = min(1.0, progress.elapsed_s / planned) if planned else 1.0
        done = progress.phase == "done"
        # Once done, the line is red when the run failed by its verdict ("0 errors" in green
        # beside a run of 404s would say the opposite of the result); while running, a run
        # with answers but no success yet is red too.
        failing = failed(run.result()) if done else _nothing_succeeded_yet(run)
        self.progress_text.value = coloured(progress_line(progress, run.live_totals), error=failing) \
            if done or failing else html.escape(progress_line(progress, run.live_totals))
        self.progress.bar_style = ("danger" if failing else "success") if done else ""

    def _clear_progress(self) -> None:
        self.progress.value = 0
        self.progress.bar_style = ""
        self.progress_text.value = ""

    def _set_running(self, running: bool) -> None:
        self.run_button.disabled = running
        self.stop_button.disabled = not running
        # Apply stays enabled: changing the server during a run is what the live view is for.
        self.save_button.disabled = self.export_button.disabled = running or not self.records
        self.report_button.disabled = running or not self.records

    def _finish(self, result: LoadResult, changes: list[tuple[int, str]] | None = None) -> Record:
        self._runs_made += 1
        # The server's meter beside the generator's (load={"hiccup_meter": True}): the record
        # keeps each, named by whose loop it timed.
        server = self.server
        server_hiccups = server.hiccups(result.start_ns) \
            if server is not None and server.config.hiccup_meter else None
        # a server the lab did not start: its settings are unknown (the record still says which
        # network path the run went through)
        record = record_from_result(result, server_config=server.config if server else None,
                                    name=f"run {self._runs_made}", changes=changes or (),
                                    server_hiccups=server_hiccups)
        self.records.append(record)
        self.results.append(result)
        outcome, failure = result.verdict()
        if failure is None:
            checks = "".join(f"; {check.describe()}" for check in result.checks)
            self._say(headline(result) + checks)
        else:  # failure is never shown as success: red, and the reason first
            what = "STOPPED" if outcome is Outcome.STOPPED else "FAILED"
            self._say(f"{what}: {failure} -- {headline(result)}", error=True)
        if result.summary.succeeded:
            # the table marks a percentile too few requests lie beyond; the line says why
            note = catalogue.unsupported_note(result.summary.latency.count)
            self.summary_view.value = summary_table(result).to_html(classes="lab-table", border=0) + (
                f'<div class="lab-note">{html.escape(note)}</div>' if note else "")
            self.figures = [plots.percentile_spectrum(record), plots.histogram(record)]
            self.plots_view.children = [figure_image(figure) for figure in self.figures]
        else:  # a table of dashes and empty axes would look like figures of nothing, fast
            self.summary_view.value = coloured(
                "no latency figures or plots: no request succeeded", error=True)
            self.figures = []
            self.plots_view.children = []
        self._show_runs()
        return record

    def _show_runs(self) -> None:
        # Short labels, the differing settings right after the run's name: a long label is cut
        # at the box's edge, and the part cut off is the part that tells runs apart.
        labels = compare.short_labels(self.records)
        self.overlay_pick.options = [(label, index) for index, label in enumerate(labels)]
        self.runs_view.value = compare.comparison_view(
            self.records, setting_labels=self._setting_labels()).to_html()

    def _setting_labels(self) -> dict[str, str]:
        """The runs table's settings by the labels of the widgets that set them."""
        forms = {"server": self.server_form, "load": self.load_form}
        return {f"{part}.{name}": control.label
                for part, form in forms.items() if form is not None
                for name, control in form.controls.items()}

    def runs_table(self) -> pd.DataFrame:
        """This session's runs side by side: the settings that differ and the figures."""
        return compare.compare(self.records) if self.records else pd.DataFrame()

    def overlay(self, indexes: list[int] | None = None) -> Figure | None:
        chosen = list(indexes if indexes is not None else self.overlay_pick.value) or \
            list(range(len(self.records)))
        if not chosen:
            self._say("no runs yet", error=True, near=self.keep_message)
            return None
        # A run without a success has no latency to draw: left out, and said so, rather than
        # named in a legend beside a line that is not there.
        drawable = [self.records[i] for i in chosen if self.records[i].summary.succeeded]
        left_out = [self.records[i].name for i in chosen if not self.records[i].summary.succeeded]
        if left_out:
            self._say(f"not overlaid (no request succeeded): {', '.join(left_out)}", error=True,
                      near=self.keep_message)
        if not drawable:
            self.overlay_view.children = []
            return None
        figure = plots.percentile_spectrum(drawable)
        self.overlay_view.children = [figure_image(figure, size=OVERLAY_SIZE_INCHES)]
        return figure

    # --- keeping results ------------------------------------------------------------------

    def _store(self) -> RecordStore:
        if self.store is None:
            self.store = RecordStore()
        return self.store

    def _chosen_records(self) -> list[Record]:
        picked = list(self.overlay_pick.value)
        return [self.records[i] for i in picked] if picked else self.records[-1:]

    def save(self) -> list[Path]:
        """Save the picked runs (or the last one) as records in the data folder, each named by
        its label in the panel (``run 2 · nodelay off``), made unique in the folder."""
        chosen = self._chosen_records()
        labels = dict(zip((record.id for record in self.records), compare.short_labels(self.records),
                          strict=True))
        try:
            store = self._store()
            taken = {info.name for info in store.scan()[0]}
            saved = []
            for record in chosen:
                named = record.replace(name=_unique_name(labels[record.id], taken))
                taken.add(named.name)
                saved.append((named, store.save(named)))
        except (OSError, ConfigError) as error:
            self._say(f"not saved: {error}", error=True, near=self.keep_message)
            return []
        paths = [path for _, path in saved]
        self._say(f"saved {_names([record for record, _ in saved])} in {_folders(paths)}",
                  near=self.keep_message)
        self._list_saved_runs()
        return paths

    def load_run(self, reference: str) -> Record | None:
        """Bring a saved run (``bench --save``, an earlier session: a name, an id, a prefix of
        one, or ``latest``) into this session's runs, to compare and overlay; None (and the
        reason beside the Load button) when there is no such run."""
        reference = reference.strip()
        try:
            if not reference:
                raise ConfigError("saved run", "give a run's name or id (python -m lab runs lists them)")
            record = self._store().load(reference)
        except (LabError, OSError) as error:
            self._say(f"not loaded: {error}", error=True, near=self.keep_message)
            return None
        if any(kept.id == record.id for kept in self.records):
            self._say(f"{record.name} ({record.id}) is among this session's runs already",
                      near=self.keep_message)
            return None
        self.records.append(record)
        self._show_runs()
        self._set_running(self._run is not None)
        self._say(f"loaded {record.name} ({record.id}, {record.summary.requests:,} requests)",
                  near=self.keep_message)
        return record

    def _list_saved_runs(self) -> None:
        """The saved runs' names, newest first, as the Load box's suggestions."""
        try:  # scan(), not infos(): a foreign entry in the folder is no reason to warn here
            infos = (self.store or RecordStore()).scan()[0]
        except OSError:
            infos = []
        self.saved_pick.options = list(dict.fromkeys(info.name for info in reversed(infos)))

    def export(self, format: str | None = None) -> list[Path]:
        """Export the picked runs (or the last one) to <data folder>/exports/."""
        format = format or self.export_format.value
        directory = self._store().exports_path
        try:
            directory.mkdir(parents=True, exist_ok=True)
            paths = [export(record, format, default_export_path(record, format, directory))
                     for record in self._chosen_records()]
        except (OSError, ValueError) as error:
            self._say(f"not exported: {error}", error=True, near=self.keep_message)
            return []
        self._say(f"exported {_names(self._chosen_records())} to {_folders(paths)}: "
                  + ", ".join(Path(p).name for p in paths), near=self.keep_message)
        return [Path(p) for p in paths]

    def report(self) -> Path | None:
        """The picked runs (or every run of this session) as one HTML file to share, in
        <data folder>/exports/ (lab/records/html_report.py)."""
        records = [self.records[i] for i in self.overlay_pick.value] or list(self.records)
        if not records:
            self._say("no runs yet", error=True, near=self.keep_message)
            return None
        path = self._store().exports_path / f"{records[-1].id}-report-of-{len(records)}.html"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_report(records, path)
        except OSError as error:
            self._say(f"no report written: {error}", error=True, near=self.keep_message)
            return None
        self._say(f"report of {_names(records)}: {path}", near=self.keep_message)
        return path

    def close(self) -> None:
        """Stop a run in progress, and the server or the network path the panel started."""
        self.stop_run()
        if self._owns_server and self.server is not None:
            self.server.stop()
        if self.front is not None:  # the path the panel put in front of a server it did not start
            self.front.stop()
        self.widget.close()


def _unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``...: the first not ``taken``."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name} ({number})"
    return candidate


def _names(records: list[Record]) -> str:
    return ", ".join(record.name for record in records)


def _folders(paths: list[Path] | list[str]) -> str:
    """The folder (or folders) the paths are in: said once, not once per file."""
    return ", ".join(sorted({str(Path(path).parent) for path in paths}))

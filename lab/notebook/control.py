"""Setting the panel's knobs by name, as a user would type them: ``panel.set(nodelay="off")``,
``panel.set(delay_ms=20)`` for the emulated network path in front of its server.

For notebooks, tests and teaching: the same widgets a user would click are set, so the panel
shows what the code did, and Apply / Run then behave exactly as for a click. Values may be
Python values (``False``, ``0.04``) or text as on the command line (``"off"``, ``"40ms"``,
``"64KiB"``). An unknown name or a bad value is one :class:`~lab.errors.ConfigError` naming
the knob, and nothing is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, get_args

import ipywidgets as widgets
from traitlets import TraitError

from lab.engine.spec import LoadSpec
from lab.errors import ConfigError
from lab.http.config import ServerConfig
from lab.netpath import Path as NetworkPath
from lab.notebook.widgets import KnobForm
from lab.options import is_text_list, parse_value
from lab.options import knobs as declared_knobs
from lab.server import Isolation, ServerHandle

PANEL_TEXT_KNOBS = ("path", "isolation", "cluster")  # the panel's own boxes beside the knob forms
PATH_KNOBS = frozenset(field.name for field, _ in declared_knobs(NetworkPath))
SERVER_KNOBS = frozenset(field.name for field, _ in declared_knobs(ServerConfig))
# Server knobs without a widget: where the panel's server listens, fixed while it runs.
FIXED_SERVER_KNOBS = frozenset(field.name for field, spec in declared_knobs(ServerConfig) if not spec.widget)


class EmulatedLink(Protocol):
    """The emulated path in front of the panel's server: the lab's own (``ServerHandle.path``)
    or one put in front of a server the lab did not start (``PathInFront``)."""

    @property
    def spec(self) -> NetworkPath: ...
    def update(self, spec: NetworkPath | str) -> NetworkPath: ...


class KnobbedPanel(Protocol):
    """What setting knobs needs of a panel (lab.notebook.panel.LabPanel, which calls it): its
    forms and boxes, and its check of the load they describe."""

    @property
    def server(self) -> ServerHandle | None: ...  # None: a server the lab did not start
    @property
    def server_form(self) -> KnobForm | None: ...
    @property
    def load_form(self) -> KnobForm: ...
    @property
    def network_path_form(self) -> KnobForm | None: ...
    @property
    def network_link(self) -> EmulatedLink | None: ...
    @property
    def path(self) -> widgets.Text: ...
    @property
    def cluster(self) -> widgets.Text: ...
    @property
    def isolation(self) -> widgets.Dropdown: ...

    def load_spec(self) -> LoadSpec: ...


def set_knobs(panel: KnobbedPanel, knobs: Mapping[str, Any]) -> None:
    """Set server, load and network-path knobs on the panel's widgets; all or nothing."""
    server_values: dict[str, Any] = {}
    load_values: dict[str, Any] = {}
    path_values: dict[str, Any] = {}
    path_form = panel.network_path_form
    server_controls = panel.server_form.controls if panel.server_form is not None else {}
    for name, value in knobs.items():
        if name in server_controls:
            server_values[name] = _parsed(ServerConfig, name, value)
        elif name in panel.load_form.controls:
            load_values[name] = _parsed(LoadSpec, name, value)
        elif path_form is not None and name in path_form.controls:
            path_values[name] = _parsed(NetworkPath, name, value)
        elif name in PATH_KNOBS:
            raise ConfigError(name, "is a knob of the emulated network path, and this panel's server "
                              "has none; start it with LabPanel(network_path='delay=20ms')")
        elif name in SERVER_KNOBS and panel.server is None:
            raise ConfigError(name, "is a knob of the lab's own server; this panel loads a server "
                              "the lab did not start (to=...), whose settings are its own")
        elif name in FIXED_SERVER_KNOBS:
            raise ConfigError(name, "is fixed while the panel runs (where its server listens)")
        elif name not in PANEL_TEXT_KNOBS:
            path_names = list(path_form.controls) if path_form is not None else []
            known = sorted([*server_controls, *panel.load_form.controls, *path_names,
                            *PANEL_TEXT_KNOBS])
            raise ConfigError(name, "is not a knob of the panel; its knobs: " + ", ".join(known))
    isolations = get_args(Isolation)
    if "isolation" in knobs and panel.server is None:
        raise ConfigError("isolation", "this panel loads a server the lab did not start (to=...); "
                          "where it runs is its own")
    if "isolation" in knobs and knobs["isolation"] not in isolations:
        raise ConfigError("isolation",
                          f"{knobs['isolation']!r} is not allowed; allowed: {', '.join(isolations)}")
    cluster = str(knobs.get("cluster") or "").strip()
    if cluster:
        from lab.engine.cluster import parse_cluster

        parse_cluster(cluster)

    server_form = panel.server_form
    undo_server = server_form.values() if server_form is not None else {}
    undo_load = panel.load_form.values()
    undo_network = path_form.values() if path_form is not None else {}
    undo_path = panel.path.value
    try:
        if server_form is not None:
            _show(server_form, server_values)
        _show(panel.load_form, load_values)
        link = panel.network_link
        if path_form is not None and link is not None:
            _show(path_form, path_values)
            path_form.build(link.spec)
        if "path" in knobs:
            panel.path.value = str(knobs["path"])
        # The same checks Apply and Run make, now: a bad value is named where it was set.
        if panel.server is not None and server_form is not None:
            panel.server.config.replace(**server_form.values())
        panel.load_spec()
    except ConfigError:
        if server_form is not None:
            _show(server_form, undo_server)
        _show(panel.load_form, undo_load)
        if path_form is not None:
            _show(path_form, undo_network)
        panel.path.value = undo_path
        raise
    if "cluster" in knobs:
        panel.cluster.value = cluster
    if "isolation" in knobs:
        panel.isolation.value = knobs["isolation"]  # observed: applies at once, as a click does


def _show(form: KnobForm, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        try:
            form.controls[name].set(value)
        except TraitError as error:  # e.g. 1.5 for a whole number, a word not in a list
            raise ConfigError(name, f"{value!r} does not fit this knob: {error}") from None


def _parsed(config_class: type, name: str, value: Any) -> Any:
    """A value as the widget holds it; text is read as on the command line."""
    if isinstance(value, str):
        if is_text_list(config_class, name):
            return tuple(word.strip() for word in value.split(",") if word.strip())
        try:
            value = parse_value(config_class, name, value)
        except ValueError as error:
            raise ConfigError(name, f"cannot read {value!r}: {error}") from None
    if isinstance(value, list):
        value = tuple(value)
    return value

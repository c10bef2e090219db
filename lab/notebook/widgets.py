"""Widgets generated from knob declarations, so the panel never defines a knob again.

``KnobForm(ServerConfig, current_config)`` builds one control per knob from its type and its
:class:`~lab.options.Knob` metadata (range, choices, help), reads the values back, and turns
them into a validated configuration -- or the :class:`~lab.options.ConfigError` that says
which value is wrong.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ipywidgets as widgets

from lab.options import Knob, describe_range, field_type, is_text_list, knob_label, knobs

# Wide enough for the longest derived label ("keepalive timeout (s)") at JupyterLab's font;
# a row (label, none-box, value) must fit half of a notebook's output area at 1400 px.
LABEL_WIDTH = "165px"
VALUE_WIDTH = "130px"


class KnobControl:
    """One knob's widget: a checkbox, a dropdown, a bounded number box or a text box.

    A knob that accepts None gets a checkbox in front: unticked means None ("OS default",
    "no limit"), ticked enables the value box; an on/off knob that accepts None is one dropdown
    of its three states instead (quickack: kernel default, on, off). The label is derived from the declaration
    (``duration (s)``); the tooltip names the knob as ``panel.set`` and the CLI spell it.
    """

    def __init__(self, name: str, spec: Knob, base: type, nullable: bool, value: Any) -> None:
        self.name, self.spec, self.base, self.nullable = name, spec, base, nullable
        self.value_widget = self._value_widget(value)
        self.enabled: widgets.Checkbox | None = None
        self.label = knob_label(name, spec)
        label = widgets.Label(self.label, layout=widgets.Layout(width=LABEL_WIDTH))
        label.tooltip = f"{name}: {spec.help} [{describe_range(spec, nullable, base)}]"
        self.value_widget.tooltip = label.tooltip
        parts: list[widgets.Widget] = [label]
        if nullable and base is not bool:
            self.enabled = widgets.Checkbox(value=value is not None, indent=False,
                                            layout=widgets.Layout(width="28px"))
            self.enabled.observe(self._sync_enabled, names="value")
            self._sync_enabled()
            parts.append(self.enabled)
        parts.append(self.value_widget)
        self.widget = widgets.HBox(parts)

    def _value_widget(self, value: Any) -> widgets.ValueWidget:
        spec, base = self.spec, self.base
        layout = widgets.Layout(width=VALUE_WIDTH)
        if base is bool and self.nullable:
            return widgets.Dropdown(options=[(spec.none_label, None), ("on", True), ("off", False)],
                                    value=value, layout=layout)
        if base is bool:
            return widgets.Checkbox(value=bool(value), indent=False, layout=layout)
        if spec.choices is not None:
            return widgets.Dropdown(options=list(spec.choices), value=value, layout=layout)
        if base in (int, float):
            # Unbounded boxes on purpose: a bounded one silently clamps what the user typed,
            # while validation names the knob and its range in the panel's message.
            number_class = widgets.IntText if base is int else widgets.FloatText
            start = value if value is not None else (spec.minimum or 0)
            return number_class(value=_shown(start), layout=layout)
        if base is tuple:  # a list of words (thresholds): comma-separated in one box
            # Short enough for the box (a longer placeholder is cut), in the CLI's word for one
            # item ("EXPR, …"); the tooltip has the help with its examples. The box takes the
            # rest of its row: three thresholds ("p99<0.1ms, p50<1ms, errors<1%") do not fit 130 px.
            words = f"{spec.metavar or 'a'}, …"
            return widgets.Text(value=", ".join(value), placeholder=words,
                                layout=widgets.Layout(width="auto", flex=f"1 1 {VALUE_WIDTH}",
                                                      min_width=VALUE_WIDTH))
        if spec.metavar is not None and "," in spec.metavar:
            # A list written as text (the /metrics buckets: 14 bounds, ~60 characters): a box
            # that wraps, across the rest of its row, so that no part of it is hidden.
            return widgets.Textarea(value="" if value is None else str(value), rows=2,
                                    layout=widgets.Layout(width="auto", flex=f"1 1 {VALUE_WIDTH}",
                                                          min_width=VALUE_WIDTH))
        return widgets.Text(value="" if value is None else str(value), layout=layout)

    def _sync_enabled(self, _change: Any = None) -> None:
        if self.enabled is not None:
            self.value_widget.disabled = not self.enabled.value

    def get(self) -> Any:
        if self.enabled is not None and not self.enabled.value:
            return None
        value = self.value_widget.value
        if self.base is tuple:
            return tuple(word.strip() for word in str(value).split(",") if word.strip())
        if self.base is int and isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def set(self, value: Any) -> None:
        if self.enabled is not None:
            self.enabled.value = value is not None
        if self.base is tuple:
            self.value_widget.value = ", ".join(value)
        elif value is not None or self.base is bool:  # a three-state knob shows None itself
            self.value_widget.value = _shown(value)


def _shown(value: Any) -> Any:
    """A float as a box can show it: 3 * 1.2 is 3.5999999999999996, which a 130 px box cuts;
    12 significant digits are more than any knob means and give 3.6."""
    return float(f"{value:.12g}") if isinstance(value, float) else value


class KnobForm:
    """Controls for some knobs of one configuration class, grouped as the class groups them."""

    def __init__(self, config_class: type, current: Any, *, tabs: bool = False,
                 later_groups: tuple[str, ...] = ()) -> None:
        """``later_groups``: groups shown after the others, whatever the declaration's order
        (the WebSocket knobs, which only a ws:// target uses, after connections and duration)."""
        self.config_class = config_class
        self.later_groups = later_groups
        self.controls: dict[str, KnobControl] = {}
        for field, spec in knobs(config_class):
            if not spec.widget:
                continue
            base, nullable = field_type(config_class, field.name)
            if base not in (bool, int, float, str) and spec.choices is None \
                    and not is_text_list(config_class, field.name):
                continue  # headers (pairs) and bytes have no sensible single widget; the panel sets them
            self.controls[field.name] = KnobControl(field.name, spec, base, nullable,
                                                    getattr(current, field.name))
        self.widget = self._layout(tabs)

    def _layout(self, tabs: bool) -> widgets.Widget:
        groups: dict[str, list[widgets.Widget]] = {}
        for control in self.controls.values():
            groups.setdefault(control.spec.group, []).append(control.widget)
        later = {group: groups.pop(group) for group in self.later_groups if group in groups}
        groups.update(later)
        if tabs:  # one tab per group keeps a long form short
            tab = widgets.Tab(children=[widgets.VBox(rows) for rows in groups.values()])
            tab.titles = tuple(groups)
            return tab
        return widgets.VBox([widgets.VBox([widgets.HTML(f"<b>{group}</b>"), *rows])
                             for group, rows in groups.items()])

    def values(self) -> dict[str, Any]:
        return {name: control.get() for name, control in self.controls.items()}

    def changes_from(self, current: Any) -> dict[str, Any]:
        """The knobs whose widget value differs from ``current``."""
        return {name: value for name, value in self.values().items()
                if getattr(current, name) != value}

    def build(self, base: Any) -> Any:
        """``base`` with the widget values applied; raises ConfigError on a bad value."""
        return dataclasses.replace(base, **self.values())

    def show(self, config: Any) -> None:
        """Make the widgets show ``config``."""
        for name, control in self.controls.items():
            control.set(getattr(config, name))

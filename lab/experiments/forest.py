"""A forest plot of a sweep: each setting's ratio against the baseline, with its interval.

One row per (setting, metric); the point is the ratio, the bar its 95 % interval, the shaded
band the noise band around 1, and the colour the verdict. The x axis is logarithmic because
ratios are: 2x slower and 2x faster sit at the same distance from 1 (and a 400x Nagle stall
fits on the same axes as a 3 % wobble).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from lab.errors import ConfigError
from lab.experiments.effects import FASTER, SLOWER, Effect
from lab.records.plots import enable_inline_display

VERDICT_COLOURS = {SLOWER: "tab:red", FASTER: "tab:green"}
NO_EFFECT_COLOUR = "tab:grey"
ROW_HEIGHT_INCHES = 0.45


def forest_plot(effects: Sequence[Effect], *, title: str = "effect against the baseline") -> Figure:
    """The effects as a forest plot (a Figure, displayed inline in a notebook)."""
    if not effects:
        raise ConfigError("effects", "nothing to plot: the sweep measured no effect")
    figure = Figure(figsize=(9.0, 1.5 + ROW_HEIGHT_INCHES * len(effects)), layout="constrained")
    axes = figure.subplots()
    band = effects[0].noise_band
    axes.axvspan(1 - band, 1 + band, color="0.9", label=f"noise band ±{band:.0%}")
    axes.axvline(1.0, color="0.5", linewidth=1)
    rows = list(reversed(effects))  # the first effect on top
    for row, effect in enumerate(rows):
        colour = VERDICT_COLOURS.get(effect.verdict, NO_EFFECT_COLOUR)
        axes.errorbar([effect.ratio], [row], capsize=4, fmt="o", color=colour,
                      xerr=[[effect.ratio - effect.ci_low], [effect.ci_high - effect.ratio]])
        axes.annotate(f" ×{effect.ratio:.3g}  {effect.verdict}", (effect.ci_high, row),
                      va="center", fontsize=9, color=colour)
    axes.set_yticks(range(len(rows)), [_row_label(effect) for effect in rows])
    axes.set_xscale("log")
    axes.set_xlabel("ratio to the baseline, 95 % BCa interval over rounds (log scale; > 1 is slower)")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def _row_label(effect: Effect) -> str:
    setting = ", ".join(f"{name}={value}" for name, value in effect.setting.items())
    return f"{setting}  {effect.metric}"


enable_inline_display()

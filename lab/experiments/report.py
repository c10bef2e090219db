"""The report to share of an experiment: a sweep or a capacity search, as one HTML file.

Built from the same parts as a report of saved runs (lab/records/html_report.py) and as
self-contained: no network, no scripts, figures as inline SVG.

A sweep's report leads with its verdicts: each effect's ratio, 95 % interval, rank-test p and
verdict as the sweep computed them (never recomputed here), and the forest plot. Then every
run of every round, and -- when the runs were saved -- the runs of the last round, one per
setting, compared as ``python -m lab report`` compares saved runs (its table is ``compare``'s).

A capacity search's report: the capacity and its bracket, each probe's figures (corrected and
uncorrected p99 side by side), a plot of latency against the offered rate, and the search's
settings. Probes keep their summaries, not their samples: there is no raw data to attach but
the search's JSON document.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lab.experiments.capacity import CapacityResult
from lab.experiments.effects import FEWEST_ROUNDS_FOR_A_VERDICT, RANK_TEST, SIGNIFICANCE
from lab.experiments.sweeps import SweepResult, label
from lab.measure import figures as catalogue
from lab.measure.report import format_figure
from lab.records.environment import Environment
from lab.records.files import write_text_atomically
from lab.records.html_report import (
    Section,
    data_link,
    esc,
    figure_html,
    key_value_table,
    number_cell,
    page,
    run_sections,
    size_text,
    write_report,
)
from lab.records.record import Record

VERDICT_CLASSES = {"slower": "failed", "faster": "passed"}


def _figure_of(summary_latency: Any, key: str) -> float | str:
    """A percentile as the tables show it: the mark when too few samples lie beyond it."""
    return catalogue.percentile(key).shown(summary_latency) if key.startswith("p") \
        else float(getattr(summary_latency, key))


def _json_link(document: dict[str, Any], file_name: str, what: str) -> str:
    data = json.dumps(document, indent=2, default=str).encode()
    return data_link(data, "application/json", file_name, f"{what} ({size_text(len(data))})")


# --- a sweep --------------------------------------------------------------------------------

def sweep_verdicts_section(result: SweepResult) -> Section:
    rows = []
    for effect in result.effects:
        verdict_class = VERDICT_CLASSES.get(effect.verdict, "")
        rows.append(
            f"<tr><th>{esc(label(effect.setting))}</th><td class='text'>{esc(effect.metric)}</td>"
            f"{number_cell(effect.ratio)}{number_cell(effect.ci_low)}{number_cell(effect.ci_high)}"
            f"<td data-value='{effect.p_value!r}'>{effect.p_value:.2g}</td>"
            f"<td class='text {verdict_class}'>{esc(effect.verdict)}"
            f"{' (within the noise band)' if effect.within_noise_band else ''}</td></tr>")
    plan = result.plan
    table = ("<table id='effects'><thead><tr><th>setting</th><th>metric</th><th>ratio</th>"
             "<th>95 % low</th><th>95 % high</th><th>p</th><th>verdict</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    notes = [f"Each ratio is the setting's figure over the baseline's ({label(plan.settings[0])}), "
             f"the mean over {plan.rounds} rounds; the interval is a 95 % BCa bootstrap over rounds; "
             f"p is the {RANK_TEST}. A verdict needs the interval outside the noise band "
             f"(±{plan.noise_band:.0%}) and p below {SIGNIFICANCE:g}."]
    if plan.rounds < FEWEST_ROUNDS_FOR_A_VERDICT:
        notes.append(f"With {plan.rounds} rounds the rank test cannot reach p < {SIGNIFICANCE:g}: no "
                     f"verdict can name an effect ({FEWEST_ROUNDS_FOR_A_VERDICT} or more rounds can).")
    body = table + "".join(f"<p class='note'>{esc(note)}</p>" for note in notes)
    if result.effects:
        body += figure_html(result.forest_plot(), "Each effect with its interval; the shaded band is "
                            "the noise band; log axis, > 1 is slower.")
    return Section("effects", "Verdicts and intervals", body)


def sweep_plan_section(result: SweepResult) -> Section:
    plan = result.plan
    rows: list[tuple[str, Sequence[Any]]] = [
        ("path", [plan.path]),
        *((f"swept: {name}", [list(values)]) for name, values in plan.knobs.items()),
        *((f"held: {name}", [value]) for name, value in plan.fixed.items()),
        ("baseline", [label(plan.settings[0])]), ("rounds", [plan.rounds]),
        ("duration (s)", [plan.duration_seconds]), ("warm-up (s)", [plan.warmup_seconds]),
        ("connections", [plan.connections]), ("rate", [plan.rate]), ("stages", [list(plan.stages)]),
        ("metrics", [list(plan.metrics)]), ("noise band", [f"±{plan.noise_band:.0%}"]),
        ("seed of the round order", [plan.seed]), ("a fresh server per run", [plan.restarts]),
        ("server cores", [result.cores.get("server")]), ("load cores", [result.cores.get("load")]),
        ("emulated network path", [plan.network_path]),
        ("target", [None if plan.target is None else f"{plan.target[0]}:{plan.target[1]}"]),
    ]
    return Section("plan", "How the sweep ran", key_value_table(rows, [result.sweep_id]))


SWEEP_RUN_FIGURES = ("p50", "p90", "p99", "max")


def sweep_runs_section(result: SweepResult) -> Section:
    """Every run of every round, in the order it ran."""
    head = "".join(f"<th>{name}</th>" for name in ("round", "position", "setting", "record", "requests",
                                                    "errors", "requests/s",
                                                    *(f"{key} ms" for key in SWEEP_RUN_FIGURES)))
    rows = []
    for run in result.runs:
        latency = run.summary.latency
        failed = " class='failed'" if run.summary.error_total else ""
        rows.append(f"<tr><td>{run.round}</td><td>{run.position}</td>"
                    f"<td class='text'>{esc(label(run.setting))}</td>"
                    f"<td class='text'>{esc(run.record_id)}</td>"
                    f"{number_cell(run.summary.requests)}<td data-value='{run.summary.error_total}'{failed}>"
                    f"{format_figure(run.summary.error_total)}</td>{number_cell(run.summary.rps)}"
                    + "".join(number_cell(_figure_of(latency, key)) for key in SWEEP_RUN_FIGURES) + "</tr>")
    table = (f"<div class='scroll'><table id='sweep-runs'><thead><tr>{head}</tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table></div>")
    return Section("rounds", "Every run of every round", table)


def last_round_records(result: SweepResult) -> list[Record]:
    """One saved run per setting, from the last round, the baseline first; none when the runs
    were not saved."""
    if result.store is None:
        return []
    last = {label(run.setting): run for run in result.runs if run.round == result.plan.rounds}
    return [result.store.load(last[label(setting)].record_id) for setting in result.plan.settings]


def sweep_report_html(result: SweepResult, *, title: str | None = None) -> str:
    """The report of a sweep (see the module's docstring)."""
    records = last_round_records(result)
    sections = [sweep_verdicts_section(result), sweep_plan_section(result), sweep_runs_section(result)]
    lead = ""
    if records:
        lead = (f"<p class='note'>From “The figures side by side” on, the report shows the runs "
                f"of round {result.plan.rounds} (the last), one per setting: one round is an "
                "example, the verdicts above are over every round.</p>")
        sections += run_sections(records)
    else:
        lead = ("<p class='note'>The sweep's runs were not saved (--no-save): this report has their "
                "figures, not their samples or distributions.</p>")
    sweep_json = _json_link(result.to_json_dict(), f"{result.sweep_id}.json", "the sweep's JSON (--json)")
    sections.append(Section("sweep-data", "The sweep's own data", f"<p>{sweep_json}</p>"))
    return page(title or f"Sweep {result.sweep_id}: {', '.join(result.plan.knobs)}", sections, lead=lead)


def write_sweep_report(result: SweepResult, path: Path | str, *, title: str | None = None) -> Path:
    write_text_atomically(path, sweep_report_html(result, title=title))
    return Path(path)


# --- a capacity search ----------------------------------------------------------------------

PROBE_FIGURES = ("p50", "p99", "max")


def capacity_result_section(result: CapacityResult) -> Section:
    slo = " and ".join(result.slo)
    low, high = result.bracket
    if result.no_success is not None:
        body = f"<p class='banner'>The search stopped: {esc(result.no_success)}</p>"
    elif result.capacity_rps == 0:
        body = (f"<p class='banner'>{esc(slo)} failed at every rate tried, down to "
                f"{result.probes[-1].rate:,.0f} requests/s.</p>")
    else:
        above = f"fails at {high:,.0f}" if high is not None else "no rate tried failed"
        body = (f"<p><b class='passed'>capacity: {low:,.0f} requests/s</b> with {esc(slo)} "
                f"({esc(above)}).</p>")
    notes = []
    if result.stopped_by_budget:
        notes.append("The time budget was spent before the bracket was narrow enough.")
    if result.network_path:
        notes.append(f"The probes crossed the emulated network path {result.network_path}.")
    notes.append("Each probe is an open loop timed from the intended send (corrected for "
                 "coordinated omission); a failed probe was run again before its rate counted "
                 "as failed.")
    body += "".join(f"<p class='note'>{esc(note)}</p>" for note in notes)
    return Section("capacity", "The capacity", body)


def capacity_probes_section(result: CapacityResult) -> Section:
    head = "".join(f"<th>{name}</th>" for name in (
        "probe", "offered rate", "result", "why", "requests", "requests/s", "errors", "late",
        *(f"{key} ms" for key in PROBE_FIGURES), "uncorrected p99 ms"))
    rows = []
    for index, probe in enumerate(result.probes, start=1):
        summary = probe.summary
        uncorrected = _figure_of(summary.uncorrected, "p99") if summary.uncorrected is not None else math.nan
        rows.append(f"<tr><td>{index}</td>{number_cell(probe.rate)}"
                    f"<td class='text {'passed' if probe.passed else 'failed'}'>"
                    f"{'pass' if probe.passed else 'fail'}</td><td class='text'>{esc(probe.why)}</td>"
                    f"{number_cell(summary.requests)}{number_cell(summary.rps)}"
                    f"{number_cell(summary.error_total)}{number_cell(summary.late)}"
                    + "".join(number_cell(_figure_of(summary.latency, key)) for key in PROBE_FIGURES)
                    + f"{number_cell(uncorrected)}</tr>")
    table = (f"<div class='scroll'><table id='probes'><thead><tr>{head}</tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table></div>")
    return Section("probes", "Every probe", table + figure_html(
        capacity_plot(result), "p99 at each offered rate, corrected (from the intended send) and "
        "uncorrected (from the actual send); filled: the probe passed."))


def capacity_plot(result: CapacityResult) -> Figure:
    figure = Figure(figsize=(9.0, 4.5), layout="constrained")
    axes = figure.subplots()
    for attribute, style, name in (("latency", "o", "p99"), ("uncorrected", "s", "uncorrected p99")):
        for passed in (True, False):
            points = [(probe.rate, getattr(probe.summary, attribute).p99) for probe in result.probes
                      if probe.passed is passed and getattr(probe.summary, attribute) is not None]
            points = [(rate, value) for rate, value in points if not math.isnan(value)]
            if points:
                axes.plot(*zip(*points, strict=True), style, linestyle="none",
                          color="C0" if attribute == "latency" else "C1",
                          fillstyle="full" if passed else "none",
                          label=f"{name}, {'pass' if passed else 'fail'}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("offered rate (requests/s, log scale)")
    axes.set_ylabel("latency (ms, log scale)")
    axes.set_title(f"Capacity search: {' and '.join(result.slo)}")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    return figure


def capacity_settings_section(result: CapacityResult) -> Section:
    plan = result.plan
    rows: list[tuple[str, Sequence[Any]]] = [("url", [result.url]), ("slo", [list(result.slo)])]
    if plan is not None:
        rows += [("connections", [plan.connections]), ("duration of each probe (s)", [plan.duration_seconds]),
                 ("first rate", [plan.start_rate]), ("highest rate", [plan.max_rate]),
                 ("precision", [f"{plan.precision:.0%}"]), ("time budget (s)", [plan.budget_seconds]),
                 ("remote target allowed", [plan.allow_remote])]
    rows.append(("emulated network path", [result.network_path]))
    environment = Environment.capture()
    rows += [(name, [getattr(environment, name)]) for name in
             ("hostname", "os", "kernel", "machine", "cpu_model", "cpu_count", "usable_cpus", "python",
              "lab", "uvloop", "httptools", "git_commit", "git_dirty")]
    note = ("<p class='note'>The environment is this machine's when the report was written (the "
            "probes are not saved as records).</p>")
    return Section("settings", "Settings and environment", key_value_table(rows, ["search"]) + note)


def capacity_report_html(result: CapacityResult, *, title: str | None = None) -> str:
    """The report of a capacity search (see the module's docstring)."""
    sections = [capacity_result_section(result), capacity_probes_section(result),
                capacity_settings_section(result),
                Section("data", "Raw data", "<p>" + _json_link(
                    result.to_json_dict(), "capacity.json", "the search's JSON (--json)")
                    + "</p><p class='note'>Probes keep their summaries, not their samples.</p>")]
    return page(title or f"Capacity of {result.url}", sections)


def write_capacity_report(result: CapacityResult, path: Path | str, *, title: str | None = None) -> Path:
    write_text_atomically(path, capacity_report_html(result, title=title))
    return Path(path)


# --- one entry point ------------------------------------------------------------------------

Reported = Record | Sequence[Record] | SweepResult | CapacityResult
DEFAULT_REPORT_PATH = "report.html"


def report(what: Reported, path: Path | str = DEFAULT_REPORT_PATH, *, baseline: int = 0,
           title: str | None = None) -> Path:
    """Write the HTML report of a run, of runs compared against ``baseline`` (an index), of a
    sweep or of a capacity search to ``path``; returns the path. ``lab.report(record)``.

    (A method on the record itself cannot be: records are storage, the report is presentation,
    and storage never imports presentation -- tests/test_architecture.py.)
    """
    if isinstance(what, SweepResult):
        return write_sweep_report(what, path, title=title)
    if isinstance(what, CapacityResult):
        return write_capacity_report(what, path, title=title)
    return write_report(what, path, baseline=baseline, title=title)

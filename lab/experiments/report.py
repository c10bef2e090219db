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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lab.experiments.capacity import CapacityResult
from lab.experiments.effects import FEWEST_ROUNDS_FOR_A_VERDICT, RANK_TEST, SIGNIFICANCE, Effect
from lab.experiments.forest import forest_plot
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
from lab.records.store import RecordStore

VERDICT_CLASSES = {"slower": "failed", "faster": "passed"}


def _figure_of(summary_latency: Any, key: str) -> float | str:
    """A percentile as the tables show it: the mark when too few samples lie beyond it."""
    return catalogue.percentile(key).shown(summary_latency) if key.startswith("p") \
        else float(getattr(summary_latency, key))


def _json_link(document: dict[str, Any], file_name: str, what: str) -> str:
    data = json.dumps(document, indent=2, default=str).encode()
    return data_link(data, "application/json", file_name, f"{what} ({size_text(len(data))})")


# --- a sweep --------------------------------------------------------------------------------
# Built from the sweep's document (SweepResult.to_json_dict(), what `sweep --json` prints and
# the store keeps in sweeps/): the report of a sweep just run and of one saved last week are
# made the same way, from the same figures.

SweepDocument = Mapping[str, Any]


def effects_of_document(document: SweepDocument) -> list[Effect]:
    return [Effect(setting=dict(effect["setting"]), metric=effect["metric"], ratio=effect["ratio"],
                   ci_low=effect["ci_low"], ci_high=effect["ci_high"], p_value=effect["p_value"],
                   verdict=effect["verdict"], within_noise_band=effect["within_noise_band"],
                   noise_band=effect["noise_band"]) for effect in document["effects"]]


def sweep_verdicts_section(document: SweepDocument) -> Section:
    effects = effects_of_document(document)
    rows = []
    for effect in effects:
        verdict_class = VERDICT_CLASSES.get(effect.verdict, "")
        rows.append(
            f"<tr><th>{esc(label(effect.setting))}</th><td class='text'>{esc(effect.metric)}</td>"
            f"{number_cell(effect.ratio)}{number_cell(effect.ci_low)}{number_cell(effect.ci_high)}"
            f"<td data-value='{effect.p_value!r}'>{effect.p_value:.2g}</td>"
            f"<td class='text {verdict_class}'>{esc(effect.verdict)}"
            f"{' (within the noise band)' if effect.within_noise_band else ''}</td></tr>")
    rounds, baseline = document["rounds"], label(document["baseline"])
    table = ("<table id='effects'><thead><tr><th>setting</th><th>metric</th><th>ratio</th>"
             "<th>95 % low</th><th>95 % high</th><th>p</th><th>verdict</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    notes = [f"Each ratio is the setting's figure over the baseline's ({baseline}), the mean over "
             f"{rounds} rounds; the interval is a 95 % BCa bootstrap over rounds; p is the "
             f"{RANK_TEST}. A verdict needs the interval outside the noise band "
             f"(±{document['noise_band']:.0%}) and p below {SIGNIFICANCE:g}."]
    if rounds < FEWEST_ROUNDS_FOR_A_VERDICT:
        notes.append(f"With {rounds} rounds the rank test cannot reach p < {SIGNIFICANCE:g}: no "
                     f"verdict can name an effect ({FEWEST_ROUNDS_FOR_A_VERDICT} or more rounds can).")
    body = table + "".join(f"<p class='note'>{esc(note)}</p>" for note in notes)
    if effects:
        figure = forest_plot(effects, title=f"{document['sweep_id']}: against {baseline}")
        body += figure_html(figure, "Each effect with its interval; the shaded band is the noise "
                            "band; log axis, > 1 is slower.")
    return Section("effects", "Verdicts and intervals", body)


PLAN_ROWS = (("path", "path"), ("rounds", "rounds"), ("duration (s)", "duration_seconds"),
             ("warm-up (s)", "warmup_seconds"), ("connections", "connections"), ("rate", "rate"),
             ("stages", "stages"), ("seed of the round order", "seed"),
             ("a fresh server per run", "restart_per_run"), ("emulated network path", "network_path"),
             ("target", "target"))


def sweep_plan_section(document: SweepDocument) -> Section:
    rows: list[tuple[str, Sequence[Any]]] = [
        *((f"swept: {name}", [values]) for name, values in document["knobs"].items()),
        *((f"held: {name}", [value]) for name, value in document["fixed"].items()),
        ("baseline", [label(document["baseline"])]),
        ("metrics", [list(dict.fromkeys(effect["metric"] for effect in document["effects"]))]),
        ("noise band", [f"±{document['noise_band']:.0%}"]),
        *((heading, [document.get(key)]) for heading, key in PLAN_ROWS),
        *((f"{part} cores", [cores]) for part, cores in document.get("cores", {}).items()),
    ]
    return Section("plan", "How the sweep ran", key_value_table(rows, [document["sweep_id"]]))


SWEEP_RUN_FIGURES = ("p50", "p90", "p99", "max")


def _run_figure(run: Mapping[str, Any], key: str) -> float | str:
    """A figure of one run as the sweep's document holds it: null where too few samples lie
    beyond a percentile (listed in ``unsupported_percentiles``) or nothing was measured."""
    if f"latency_ms.{key}" in run.get("unsupported_percentiles", ()):
        return catalogue.UNSUPPORTED
    value = run["latency_ms"].get(key)
    return math.nan if value is None else float(value)


def sweep_runs_section(document: SweepDocument) -> Section:
    """Every run of every round, in the order it ran."""
    head = "".join(f"<th>{name}</th>" for name in ("round", "position", "setting", "record", "requests",
                                                    "errors", "requests/s",
                                                    *(f"{key} ms" for key in SWEEP_RUN_FIGURES)))
    rows = []
    for run in document["runs"]:
        failed = " class='failed'" if run["errors"] else ""
        rows.append(f"<tr><td>{run['round']}</td><td>{run['position']}</td>"
                    f"<td class='text'>{esc(label(run['setting']))}</td>"
                    f"<td class='text'>{esc(run['record_id'])}</td>"
                    f"{number_cell(run['requests'])}<td data-value='{run['errors']}'{failed}>"
                    f"{format_figure(run['errors'])}</td>{number_cell(float(run['rps']))}"
                    + "".join(number_cell(_run_figure(run, key)) for key in SWEEP_RUN_FIGURES) + "</tr>")
    table = (f"<div class='scroll'><table id='sweep-runs'><thead><tr>{head}</tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table></div>")
    return Section("rounds", "Every run of every round", table)


def last_round_records(document: SweepDocument, store: RecordStore | None) -> list[Record]:
    """One saved run per setting, from the last round, the baseline first; none when the runs
    were not saved."""
    if store is None or not document.get("saved"):
        return []
    last = {label(run["setting"]): run for run in document["runs"] if run["round"] == document["rounds"]}
    return [store.load(last[label(setting)]["record_id"]) for setting in document["settings"]]


def sweep_report_html(sweep: SweepResult | SweepDocument, *, store: RecordStore | None = None,
                      title: str | None = None) -> str:
    """The report of a sweep (see the module's docstring): of a :class:`SweepResult`, or of its
    document and the store its runs were saved in."""
    if isinstance(sweep, SweepResult):
        document: SweepDocument = sweep.to_json_dict()
        store = store or sweep.store
    else:
        document = sweep
    records = last_round_records(document, store)
    sections = [sweep_verdicts_section(document), sweep_plan_section(document), sweep_runs_section(document)]
    if records:
        lead = (f"<p class='note'>From “The figures side by side” on, the report shows the runs "
                f"of round {document['rounds']} (the last), one per setting: one round is an "
                "example, the verdicts above are over every round.</p>")
        sections += run_sections(records)
    else:
        lead = ("<p class='note'>The sweep's runs were not saved (--no-save): this report has their "
                "figures, not their samples or distributions.</p>")
    sweep_id = document["sweep_id"]
    sweep_json = _json_link(dict(document), f"{sweep_id}.json", "the sweep's JSON (--json)")
    sections.append(Section("sweep-data", "The sweep's own data", f"<p>{sweep_json}</p>"))
    return page(title or f"Sweep {sweep_id}: {', '.join(document['knobs'])}", sections, lead=lead)


def write_sweep_report(sweep: SweepResult | SweepDocument, path: Path | str, *,
                       store: RecordStore | None = None, title: str | None = None) -> Path:
    write_text_atomically(path, sweep_report_html(sweep, store=store, title=title))
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
    unsupported = sum(1 for probe in result.probes if not _p99_supported(probe.summary.latency))
    left_out = (f" Left out: {unsupported} probe{'s' if unsupported > 1 else ''} with too few requests "
                "for a p99 (\"too few\" in the table)." if unsupported else "")
    return Section("probes", "Every probe", table + figure_html(
        capacity_plot(result), "p99 at each offered rate, corrected (from the intended send) and "
        "uncorrected (from the actual send); filled: the probe passed." + left_out))


def _p99_supported(latency: Any) -> bool:
    return not isinstance(_figure_of(latency, "p99"), str)


def capacity_plot(result: CapacityResult) -> Figure:
    figure = Figure(figsize=(9.0, 4.5), layout="constrained")
    axes = figure.subplots()
    for attribute, style, name in (("latency", "o", "p99"), ("uncorrected", "s", "uncorrected p99")):
        for passed in (True, False):
            # the p99s the table shows: none where too few requests lie beyond it
            points = [(probe.rate, getattr(probe.summary, attribute).p99) for probe in result.probes
                      if probe.passed is passed and getattr(probe.summary, attribute) is not None
                      and _p99_supported(getattr(probe.summary, attribute))]
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

"""The report to share: one HTML file that reaches for nothing outside itself, whose comparison
table is ``compare``'s, that names a failed run, carries the samples, and opens in a browser
with the network off.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import synthetic_samples

from lab.cli import main
from lab.measure.report import format_figure, format_ratio
from lab.records.compare import compare
from lab.records.export import to_dataframe
from lab.records.html_report import COMPARISON_ID, data_section, report_html, write_report
from lab.records.record import Record
from lab.records.store import RecordStore

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = ROOT / "test-output" / "report"
SPEC = {"mode": "open", "rate": 5000, "connections": 3, "url": "http://127.0.0.1:8080/fast"}
URL_IN_CSS = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.IGNORECASE)
REFERENCE_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "poster", "data", "action", "background"}


class Parsed(HTMLParser):
    """Every reference a document makes (attributes that load or link, url() in CSS), every
    tag, and the comparison table's cells."""

    def __init__(self, table_id: str = COMPARISON_ID) -> None:
        super().__init__(convert_charrefs=True)
        self.table_id = table_id
        self.references: list[str] = []
        self.tags: list[str] = []
        self.table: list[list[tuple[str, dict[str, str | None]]]] = []
        self._in_table = 0
        self._cell: tuple[list[str], dict[str, str | None]] | None = None
        self._css = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        for name, value in attrs:
            if name in REFERENCE_ATTRIBUTES and value is not None:
                self.references.append(value)
            if name == "style" and value:
                self.references.extend(match.group(2) for match in URL_IN_CSS.finditer(value))
        self._css = tag == "style"
        if tag == "table" and values.get("id") == self.table_id:
            self._in_table = 1
        elif self._in_table and tag == "tr":
            self.table.append([])
        elif self._in_table and tag in ("td", "th"):
            self._cell = ([], values)

    def handle_endtag(self, tag: str) -> None:
        if self._in_table and tag in ("td", "th") and self._cell is not None:
            text, values = self._cell
            self.table[-1].append(("".join(text).strip(), values))
            self._cell = None
        elif self._in_table and tag == "table":
            self._in_table = 0
        self._css = False

    def handle_data(self, data: str) -> None:
        if self._css:
            self.references.extend(match.group(2) for match in URL_IN_CSS.finditer(data))
        if self._cell is not None:
            self._cell[0].append(data)


def parse(document: str, table_id: str = COMPARISON_ID) -> Parsed:
    """The document's references and tags, and the cells of its table ``table_id``."""
    parsed = Parsed(table_id)
    parsed.feed(document)
    parsed.close()
    return parsed


def external_references(document: str) -> list[str]:
    """References that are neither a data: URI nor a #fragment of the same document."""
    return [reference for reference in parse(document).references
            if not (reference.startswith("data:") or reference.startswith("#"))]


def record(name: str, *, seed: int = 7, error_every: int = 250, nodelay: bool = True) -> Record:
    return Record.create(samples=synthetic_samples(seed=seed, error_every=error_every), name=name,
                         load_spec=SPEC, server_config={"nodelay": nodelay, "keepalive": True})


@pytest.fixture(scope="module")
def two_runs() -> list[Record]:
    return [record("nagle on", nodelay=False), record("nagle off", seed=3)]


@pytest.fixture(scope="module")
def two_runs_report(two_runs: list[Record]) -> str:
    return report_html(two_runs)


def test_record_report_writes_the_same_report(two_runs: list[Record], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``record.report()``, the method the issue names: the run (and others compared with it)
    as the same page ``lab report`` writes, by default beside the other exports' names."""
    def same(page: str) -> str:  # matplotlib names each SVG's markers and clips at random
        return re.sub(r"\b(m|p|image)[0-9a-f]{10}\b", "ID", page)

    first, second = two_runs
    written = Path(first.report(tmp_path / "both.html", others=[second], title="t"))
    assert same(written.read_text()) == same(report_html(two_runs, title="t"))
    monkeypatch.chdir(tmp_path)
    alone = Path(first.report())
    assert alone.name == f"{first.id}-nagle-on.html"
    assert same(alone.read_text()) == same(report_html([first]))


def test_the_check_finds_every_kind_of_external_reference() -> None:
    """The checker below is not vacuous: each way a page can reach out is caught."""
    page = ("<html><head><link rel='stylesheet' href='https://cdn.example/x.css'>"
            "<style>@font-face { src: url(https://fonts.example/a.woff) }</style>"
            "<script src='//cdn.example/x.js'></script></head><body>"
            "<img src='picture.png'><div style=\"background: url('x.png')\"></div>"
            "<svg><image xlink:href='http://example/x.png'/><use xlink:href='#glyph'/></svg>"
            "<a href='#top'>top</a><img src='data:image/png;base64,AAAA'></body></html>")
    assert external_references(page) == ["https://cdn.example/x.css", "https://fonts.example/a.woff",
                                         "//cdn.example/x.js", "picture.png", "x.png", "http://example/x.png"]


def test_a_report_reaches_for_nothing_outside_itself(two_runs_report: str) -> None:
    parsed = parse(two_runs_report)
    assert external_references(two_runs_report) == []
    assert not {"script", "link", "iframe", "object", "embed"} & set(parsed.tags)
    assert parsed.tags.count("svg") >= 4  # spectrum (corrected, uncorrected), histogram, timeline
    # matplotlib's own SVG names its DTD by URL: that prologue is left out of the page
    assert "<!DOCTYPE svg" not in two_runs_report and "<?xml" not in two_runs_report
    assert "@import" not in two_runs_report


def assert_table_is_compares(document: str, records: list[Record]) -> int:
    """Every cell of the report's comparison table against compare()'s: the exact value in
    data-value, the text rounded as tables round; the number of figures checked."""
    expected = compare(records)
    rows = parse(document).table
    assert [text for text, _ in rows[0][1:]] == list(expected.columns)
    by_label = {row[0][0]: row[1:] for row in rows[1:]}
    assert set(by_label) == {"outcome", *map(str, expected.index)}
    checked = 0
    for label, values in expected.iterrows():
        cells = by_label[str(label)]
        for index, (value, (text, attributes)) in enumerate(zip(values.tolist(), cells, strict=True)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                assert "data-value" not in attributes, (label, index)
                continue
            exact = attributes["data-value"]
            assert exact is not None, (label, index)
            shown = float(exact)
            assert (math.isnan(shown) and math.isnan(value)) or shown == value, (label, index)
            ratio = index >= len(records)
            assert text == (format_ratio(value) if ratio else format_figure(value)), (label, index)
            checked += 1
    return checked


def test_the_comparison_table_is_compares_every_figure(two_runs: list[Record],
                                                       two_runs_report: str) -> None:
    assert parse(two_runs_report).table[1][1][0] == "passed"  # the outcome row
    assert assert_table_is_compares(two_runs_report, two_runs) >= 2 * 14  # both runs, their ratios


def test_the_question_is_what_differed(two_runs_report: str) -> None:
    question = two_runs_report.split("id='question'")[1].split("</section>")[0]
    assert "server.nodelay" in question and "keepalive" not in question
    # every setting is listed further down, the shared ones too
    settings = two_runs_report.split("id='settings'")[1].split("</section>")[0]
    assert "server.keepalive" in settings and "load.rate" in settings


def test_corrected_and_uncorrected_latency_side_by_side(two_runs_report: str) -> None:
    omission = two_runs_report.split("id='omission'")[1].split("</section>")[0]
    assert omission.count("<th>latency</th><th>uncorrected</th>") == 2


def test_a_failed_run_is_named_first_and_in_red(two_runs: list[Record]) -> None:
    failed = record("all timed out", error_every=1)
    document = report_html([two_runs[0], failed])
    verdicts = document.split("id='verdicts'")[1].split("</section>")[0]
    assert "1 of 2 runs FAILED" in verdicts
    assert "FAILED: no request succeeded" in verdicts
    outcome = parse(document).table[1]
    assert outcome[2][0].startswith("FAILED: no request succeeded")
    assert "failed" in (outcome[2][1]["class"] or "")
    figures = document.split("id='figures'")[1].split("</section>")[0]
    assert "Not in the latency plots (no request succeeded): all timed out: nodelay=on." in figures
    assert external_references(document) == []


def _data_links(document: str) -> dict[str, bytes]:
    return {name: base64.b64decode(payload) for name, payload in
            re.findall(r"<a download='([^']+)' href='data:[^;]+;base64,([^']+)'>", document)}


def test_the_samples_are_attached_and_read_back(two_runs: list[Record], two_runs_report: str) -> None:
    links = _data_links(two_runs_report)
    first = two_runs[0]
    csv_name = next(name for name in links if name.startswith(first.id) and name.endswith(".csv.gz"))
    frame = pd.read_csv(io.BytesIO(gzip.decompress(links[csv_name])))
    assert len(frame) == first.samples.size
    pd.testing.assert_series_equal(frame["latency_ms"], to_dataframe(first)["latency_ms"], check_dtype=False)
    assert any(name.endswith(".hgrm") for name in links)


@pytest.mark.parametrize(("budget", "size"), [
    (1000, "at least 49 KiB compressed"),  # 5000 rows cannot fit: left out without being written
    (60_000, "KiB compressed"),  # written, then found too big: its size as measured
])
def test_samples_over_the_cap_are_left_out_with_the_command_that_exports_them(
        two_runs: list[Record], budget: int, size: str) -> None:
    section = data_section(two_runs, ["a", "b"], budget_bytes=budget)
    assert not any(name.endswith(".csv.gz") for name in _data_links(section.body))
    assert f"python -m lab export {two_runs[0].id} --format csv" in section.body
    assert re.search(f"samples not attached: [^;]*{size} would take the report past its cap of "
                     f"{budget / 1024:,.0f} KiB", section.body)
    assert ("at least" in section.body.split("python -m lab export")[0]) == size.startswith("at least")


# --- the command ----------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path: Path, two_runs: list[Record]) -> RecordStore:
    store = RecordStore(tmp_path / "data")
    for run in two_runs:
        store.save(run)
    return store


def test_report_command_writes_one_file(saved: RecordStore, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.html"
    status = main(["report", "nagle on", "nagle off", "--data-dir", str(saved.path), "-o", str(target)])
    assert status == 0
    assert capsys.readouterr().out.startswith(f"wrote {target} (")
    document = target.read_text()
    assert external_references(document) == []
    assert [text for text, _ in parse(document).table[0][1:]] == ["nagle on", "nagle off",
                                                                 "nagle off ÷ nagle on"]


@pytest.mark.parametrize(("output", "message"), [
    ("report.txt", "--output: report.txt: a report is HTML; give a name ending in .html"),
    ("no-such-folder/report.html", "--output: cannot write no-such-folder/report.html: the folder "
                                   "no-such-folder does not exist"),
])
def test_report_command_refuses_a_bad_output_in_one_line(saved: RecordStore, output: str, message: str,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["report", "nagle on", "--data-dir", str(saved.path), "-o", output])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error


def test_report_command_names_a_missing_run(saved: RecordStore, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["report", "no such run", "--data-dir", str(saved.path), "-o", str(tmp_path / "r.html")])
    assert status == 1
    assert "no record with id or name 'no such run'" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# --- in a browser, offline ------------------------------------------------------------------

@pytest.fixture
def offline_page(tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    """A page of Debian's Chromium (launched as tests/test_browser.py does) with the network
    off and every request that is not file: or data: aborted and listed."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (scripts/setup.sh --system installs it)")
        pytest.skip("Debian's chromium is not installed (bash scripts/setup.sh --system)")
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM_ARGS, WINDOW

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {SCREENSHOT_DIR}")
    refused: list[str] = []

    def route(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            headless=True, viewport=WINDOW, offline=True)
        try:
            context.route("**/*", route)
            page = context.pages[0] if context.pages else context.new_page()
            page.on("request", lambda request: None if request.url.startswith(("file:", "data:"))
                    else refused.append(request.url))
            yield page, refused
        finally:
            context.close()


def shown_in_browser(page: Any, path: Path, screenshot: str) -> dict[str, Any]:
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(SCREENSHOT_DIR / screenshot), full_page=True)
    figures: dict[str, Any] = page.evaluate("""() => ({
        svgs: [...document.querySelectorAll('figure svg')].map((svg) => {
            const box = svg.getBoundingClientRect(); return [box.width, box.height]; }),
        comparison: !!document.getElementById('comparison'),
        title: document.title })""")
    return figures


@pytest.mark.browser
def test_a_report_of_two_runs_opens_offline(offline_page: tuple[Any, list[str]], two_runs: list[Record],
                                            tmp_path: Path) -> None:
    page, refused = offline_page
    path = write_report([two_runs[0], record("all timed out", error_every=1)], tmp_path / "two-runs.html")
    shown = shown_in_browser(page, path, "two-runs.png")
    assert refused == []
    assert shown["comparison"] and shown["title"] == "nagle on vs all timed out"
    assert len(shown["svgs"]) >= 4 and all(width > 500 and height > 200 for width, height in shown["svgs"])


# --- a sweep and a capacity search ----------------------------------------------------------

def lab_command(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], RecordStore]:
    """A real sweep (nodelay with split writes, 3 rounds of 0.2 s), its --report and --json."""
    folder = tmp_path_factory.mktemp("sweep")
    done = lab_command("sweep", "/fast", "--knob", "nodelay=true,false", "--set", "split_writes=true",
                       "--rounds", "3", "--duration", "0.2", "--seed", "1", "--json",
                       "--data-dir", str(folder / "data"), "--report", str(folder / "sweep.html"))
    assert done.returncode == 0, done.stderr
    assert f"wrote {folder / 'sweep.html'}" in done.stderr
    return folder / "sweep.html", json.loads(done.stdout), RecordStore(folder / "data")


def test_a_saved_sweep_is_reported_later_with_the_same_figures(
        swept: tuple[Path, dict[str, Any], RecordStore], tmp_path: Path) -> None:
    path, document, store = swept
    later = tmp_path / "later.html"
    done = lab_command("report", document["sweep_id"], "--data-dir", str(store.path), "-o", str(later))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {later} (") and f"sweep {document['sweep_id']})" in done.stdout
    now, then = path.read_text(), later.read_text()
    for table in ("effects", "sweep-runs", COMPARISON_ID):
        assert parse(then, table).table == parse(now, table).table, table
    assert external_references(then) == []
    # the sweep's document sits beside its records without being taken for a broken one
    assert (store.path / "sweeps" / f"{document['sweep_id']}.json").is_file()
    assert store.scan()[1] == [] and len(store.infos()) == len(document["runs"])


def test_a_sweep_is_reported_on_its_own(swept: tuple[Path, dict[str, Any], RecordStore],
                                        tmp_path: Path) -> None:
    _, document, store = swept
    done = lab_command("report", document["sweep_id"], "latest", "--data-dir", str(store.path),
                       "-o", str(tmp_path / "r.html"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"RUN: {document['sweep_id']} is a sweep: report it on its own" in done.stderr
    missing = lab_command("report", "sweep-20000101-000000-abcd", "--data-dir", str(store.path),
                          "-o", str(tmp_path / "r.html"))
    assert missing.returncode == 1 and "no sweep sweep-20000101-000000-abcd in " in missing.stderr


def test_a_sweep_report_holds_its_verdicts_and_the_last_rounds_comparison(
        swept: tuple[Path, dict[str, Any], RecordStore]) -> None:
    path, document, store = swept
    text = path.read_text()
    assert external_references(text) == []
    effects = parse(text, "effects").table[1:]
    assert len(effects) == len(document["effects"]) == 3
    for row, effect in zip(effects, document["effects"], strict=True):
        values = [float(attributes["data-value"] or "nan") for _, attributes in row[2:6]]
        assert values == [effect["ratio"], effect["ci_low"], effect["ci_high"], effect["p_value"]]
        assert row[6][0].startswith(effect["verdict"])
    # every run of every round is listed, with the record it was saved as
    runs = parse(text, "sweep-runs").table[1:]
    assert [row[3][0] for row in runs] == [run["record_id"] for run in document["runs"]]
    # the comparison is compare()'s, of the last round's runs, the baseline first
    last = {json.dumps(run["setting"]): run["record_id"] for run in document["runs"] if run["round"] == 3}
    records = [store.load(last[json.dumps(setting)]) for setting in document["settings"]]
    assert assert_table_is_compares(text, records) >= 2 * 10
    assert "id='figures'" in text and "id='environment'" in text


def test_a_capacity_report_lists_every_probe(server: Any, tmp_path: Path) -> None:
    target = tmp_path / "capacity.html"
    done = lab_command("capacity", f"{server.url}/fast", "--slo", "p99<200ms", "--start-rate", "100",
                       "--max-rate", "200", "--duration", "0.3", "--connections", "4", "--json",
                       "--report", str(target), timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    text = target.read_text()
    assert external_references(text) == []
    probes = parse(text, "probes").table[1:]
    assert [float(row[1][1]["data-value"] or "nan") for row in probes] == \
        [probe["rate"] for probe in result["probes"]]
    assert [row[2][0] for row in probes] == ["pass" if probe["passed"] else "fail"
                                             for probe in result["probes"]]
    assert f"capacity: {result['capacity_rps']:,.0f} requests/s" in text


def test_a_report_flag_is_checked_before_the_sweep_runs(tmp_path: Path) -> None:
    done = lab_command("sweep", "/fast", "--knob", "nodelay=true,false", "--report",
                       str(tmp_path / "sweep.pdf"), "--data-dir", str(tmp_path / "data"), timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--report: " in done.stderr and ".html" in done.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.browser
def test_a_sweep_report_opens_offline(offline_page: tuple[Any, list[str]],
                                      swept: tuple[Path, dict[str, Any], RecordStore]) -> None:
    page, refused = offline_page
    shown = shown_in_browser(page, swept[0], "sweep.png")
    assert refused == []
    assert shown["comparison"] and shown["title"].startswith("Sweep sweep-")
    # the forest plot, then the spectrum, histogram and timeline of the last round (closed loop)
    assert len(shown["svgs"]) == 4 and all(width > 500 and height > 100 for width, height in shown["svgs"])


# --- the front door and the panel -----------------------------------------------------------

def test_lab_report_writes_a_run_or_runs(two_runs: list[Record], tmp_path: Path) -> None:
    import lab

    one = lab.report(two_runs[0], tmp_path / "one.html")
    assert "nagle on (" in one.read_text() and parse(one.read_text()).table[0][1][0] == "nagle on"
    both = lab.report(two_runs, tmp_path / "both.html", baseline=1)
    assert [text for text, _ in parse(both.read_text()).table[0][1:]] == ["nagle on", "nagle off",
                                                                         "nagle on ÷ nagle off"]


def test_the_panels_report_button_writes_the_sessions_runs_and_says_where(tmp_path: Path) -> None:
    import asyncio

    from lab.notebook.panel import LabPanel

    panel = LabPanel(store=RecordStore(tmp_path / "data"), load={"connections": 2, "duration_seconds": 0.3})
    try:
        assert panel.report_button.disabled  # nothing to report before a run
        async def press_run() -> Record | None:  # clicked inside a running loop, as in a kernel
            panel.run_button.click()
            assert panel.run_task is not None, panel.message.value
            return await panel.run_task

        record = asyncio.run(press_run())
        assert record is not None and not panel.report_button.disabled
        message_before = panel.message.value
        panel.report_button.click()
        written = sorted((tmp_path / "data" / "exports").glob("*.html"))
        assert len(written) == 1
        assert f"report of run 1: {written[0]}" in panel.keep_message.value
        assert panel.message.value == message_before  # the answer is beside the button
        document = written[0].read_text()
        assert external_references(document) == [] and parse(document).table[0][1][0] == "run 1"
    finally:
        panel.close()


def test_a_capacity_plot_draws_only_the_p99s_its_table_shows() -> None:
    from lab.experiments.capacity import CapacityResult, Probe
    from lab.experiments.report import capacity_plot, capacity_report_html

    def probe(rate: float, count: int, passed: bool) -> Probe:
        summary = Record.create(samples=synthetic_samples(count, error_every=10**9), name="probe",
                                load_spec={"mode": "open", "rate": rate}).summary
        return Probe(rate=rate, passed=passed, why="held" if passed else "threshold failed", summary=summary)

    # 50 requests cannot support a p99 (too few lie beyond it); 5000 can
    result = CapacityResult(url="http://127.0.0.1:9/fast", slo=("p99<1ms",), capacity_rps=100.0,
                            bracket=(100.0, 200.0), probes=[probe(100, 5000, True), probe(200, 50, False)])
    drawn = [len(line.get_xdata()) for line in capacity_plot(result).axes[0].lines]
    assert sum(drawn) == 2  # the first probe's corrected and uncorrected p99, not the second's
    document = capacity_report_html(result)
    assert "Left out: 1 probe with too few requests for a p99" in document
    assert external_references(document) == []


def test_a_numpy_figure_is_written_as_its_plain_number() -> None:
    import numpy as np

    from lab.records.html_report import number_cell

    assert number_cell(np.float64(0.25)) == "<td data-value='0.25'>0.25</td>"
    assert number_cell(np.int64(61459)) == "<td data-value='61459'>61,459</td>"
    assert number_cell(float("nan")) == "<td data-value='nan'>—</td>"
    assert number_cell(1.5, ratio=True) == "<td data-value='1.5'>×1.5</td>"

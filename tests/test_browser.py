"""The panel as a user sees it: JupyterLab in headless Chromium at 1400x900, file browser open.

Uses Debian's Chromium (/usr/bin/chromium, installed by ``scripts/setup.sh --system``) through
Playwright's ``executable_path``: no browser is downloaded. The test starts JupyterLab itself
on 127.0.0.1 with a token, a fresh settings folder and a temporary copy of the notebooks (with
``QUICK = True`` injected as tests/test_notebooks.py does), so nothing it autosaves lands in the
repository. Screenshots go to test-output/browser/ (git-ignored); the path is printed.

What a person would call clipped is checked in the DOM: no element of the panel whose content
is wider than its box (``scrollWidth > clientWidth``: a cut tab title, a label ending in "…",
a table running past the output area), every knob label and tab title shown in full, and no
picture wider than the output area.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from lab.engine.spec import LoadSpec
from lab.http.config import ServerConfig
from lab.options import knob_label, knobs

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = ROOT / "test-output" / "browser"
WINDOW = {"width": 1400, "height": 900}
# Flags that keep Chromium off the (closed) network and working as root in a container;
# Playwright adds --headless itself.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# JupyterLab's own settings for a quiet, repeatable window: no news pop-up over the output,
# and every cell kept laid out (windowing skips the layout of cells out of view, whose boxes
# would then measure 0 px and escape the checks below).
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False},
                "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}}

pytestmark = pytest.mark.browser

# Every element inside ``root`` whose content is wider than its box, described for a message.
# Inputs and selects are included: a value or an option cut at the box's edge is clipped too,
# and so is an empty box's placeholder (which scrollWidth does not see: it is measured here).
CLIPPED_JS = """(root) => {
  const clipped = [];
  const ruler = document.createElement('canvas').getContext('2d');
  const describe = (element, wide, room, text) =>
    `${element.tagName.toLowerCase()}.${[...element.classList].join('.')} ` +
    `(${Math.round(wide)} > ${Math.round(room)} px): ${JSON.stringify(text.trim().slice(0, 60))}`;
  for (const element of [root, ...root.querySelectorAll('*')]) {
    if (element.clientWidth === 0 || element.tagName === 'STYLE') continue;
    if (element.scrollWidth > element.clientWidth + 1) {
      clipped.push(describe(element, element.scrollWidth, element.clientWidth,
                            element.innerText || element.value || ''));
    }
    if (element.tagName === 'INPUT' && !element.value && element.placeholder) {
      const style = getComputedStyle(element);
      ruler.font = style.font;
      const room = element.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      const wide = ruler.measureText(element.placeholder).width;
      if (wide > room + 1) clipped.push(describe(element, wide, room, element.placeholder));
    }
  }
  return clipped;
}"""

# Pictures wider than the output area that shows them, or reaching past its right edge.
WIDE_IMAGES_JS = """(root) => {
  const area = (root.closest('.jp-OutputArea-output') || root).getBoundingClientRect();
  return [...root.querySelectorAll('img')].map((image) => image.getBoundingClientRect())
    .filter((box) => box.width > area.width + 1 || box.right > area.right + 1)
    .map((box) => `img ${Math.round(box.width)} px wide, right edge ${Math.round(box.right)} px ` +
                  `(output area ${Math.round(area.left)}-${Math.round(area.right)} px)`);
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def quick_copy(source: Path, target: Path) -> None:
    """The notebook with ``QUICK = True`` injected after its parameters cell."""
    notebook = nbformat.read(source, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            injected = nbformat.v4.new_code_cell("QUICK = True  # injected by the test")
            notebook.cells.insert(index + 1, injected)
            break
    nbformat.write(notebook, target)


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, token) of a JupyterLab serving quick copies of the notebooks."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (scripts/setup.sh --system installs it)")
        pytest.skip("Debian's chromium is not installed (bash scripts/setup.sh --system)")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        quick_copy(path, notebooks / path.name)
    settings = tmp_path / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    environment = {**os.environ, "LAB_DATA_DIR": str(tmp_path / "data"),
                   "JUPYTERLAB_SETTINGS_DIR": str(settings),
                   "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces")}
    log_path = tmp_path / "jupyterlab.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}",
             "--LabApp.news_url=", *(["--allow-root"] if os.geteuid() == 0 else [])],
            stdout=log, stderr=subprocess.STDOUT, env=environment)
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_until_answers(f"{base}/api/status?token={token}", server)
            except (RuntimeError, TimeoutError) as error:
                log.flush()
                raise RuntimeError(f"{error}:\n{log_path.read_text()[-3000:]}") from None
            yield base, token
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


def wait_until_answers(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer within {seconds} s")


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A page of Debian's Chromium with a fresh profile, at 1400x900."""
    from playwright.sync_api import sync_playwright

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {SCREENSHOT_DIR}")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            headless=True, viewport=WINDOW)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def open_and_run_all(page: Any, lab: tuple[str, str], notebook: str) -> None:
    """Open ``notebook``, wait for its kernel, Run > Run All Cells (file browser left open)."""
    from playwright.sync_api import expect

    base, token = lab
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    expect(page.locator(".jp-NotebookPanel")).to_be_visible(timeout=60_000)
    accept_kernel_dialog(page)
    expect(page.locator(".jp-DirListing")).to_be_visible()  # the file browser is open
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
        1, timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def accept_kernel_dialog(page: Any) -> None:
    """JupyterLab may ask which kernel to start; the notebook's own (Python 3) is preselected."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(state="visible", timeout=5_000)
    except Exception:  # no dialog this time
        return
    dialog.locator("button", has_text="Select").last.click()
    dialog.wait_for(state="hidden", timeout=10_000)


def knob_row(panel: Any, label: str) -> Any:
    """The row of the knob whose label reads exactly ``label``."""
    exact = re.compile(f"^{re.escape(label)}$")
    return panel.locator(".widget-hbox").filter(
        has=panel.page.locator(".widget-label", has_text=exact)).last


def press_run_and_wait(panel: Any) -> None:
    from playwright.sync_api import expect

    run_button = panel.locator("button.widget-button.mod-primary", has_text="Run")
    expect(run_button).to_be_enabled(timeout=60_000)
    before = panel.locator(".lab-comparison thead th", has_text=re.compile(r"^run \d+$")).count()
    run_button.click()
    expect(run_button).to_be_enabled(timeout=60_000)
    # The runs table has one more column once the run is in.
    new_column = panel.locator(".lab-comparison thead th", has_text=re.compile(f"^run {before + 1}$"))
    expect(new_column).to_have_count(1, timeout=30_000)


def assert_nothing_clipped(panel: Any, where: str) -> None:
    clipped = panel.evaluate(CLIPPED_JS)
    assert not clipped, f"{where}: content wider than its box:\n" + "\n".join(clipped)
    wide = panel.evaluate(WIDE_IMAGES_JS)
    assert not wide, f"{where}: pictures wider than the output area:\n" + "\n".join(wide)


def assert_the_checks_see_clipping(page: Any) -> None:
    """The checks themselves can fail: a cut label and a too-wide picture are caught."""
    page.evaluate("""() => {
      const area = document.createElement('div');
      area.className = 'jp-OutputArea-output lab-probe';
      area.style.width = '200px';
      area.innerHTML = '<span style="display:inline-block;width:50px;overflow:hidden;' +
        'white-space:nowrap;text-overflow:ellipsis">listener buffers</span>' +
        '<input style="width:60px" placeholder="comma-separated">' +
        '<img style="width:300px;height:10px">';
      document.body.appendChild(area);
    }""")
    probe = page.locator(".lab-probe")
    # the span, the placeholder, and the area the picture runs past
    assert len(probe.evaluate(CLIPPED_JS)) == 3, probe.evaluate(CLIPPED_JS)
    assert len(probe.evaluate(WIDE_IMAGES_JS)) == 1
    probe.evaluate("(probe) => probe.remove()")


# Pixels in the errors colour (#d62728) in the live view's rate plot (its canvas rows 225-290 px,
# below the latency plot and the legend): the errors/s line, not the red note "no request
# succeeded" written on the latency plot.
RED_PIXELS_JS = """(view) => {
  const canvas = view.querySelector('canvas');
  const ratio = canvas.width / canvas.clientWidth;
  const top = Math.round(225 * ratio), bottom = Math.round(290 * ratio);
  const data = canvas.getContext('2d').getImageData(0, top, canvas.width, bottom - top).data;
  let red = 0;
  for (let i = 0; i < data.length; i += 4) {
    const near = (value, target) => Math.abs(value - target) < 20;
    if (near(data[i], 214) && near(data[i + 1], 39) && near(data[i + 2], 40)) red++;
  }
  return red;
}"""
NEAR_PX = 150  # an answer this close to its button is where the user looks


def in_viewport(locator: Any) -> bool:
    """The element is wholly inside the part of the notebook the window shows (under the
    toolbar, above the status bar)."""
    box = locator.bounding_box()
    shown = locator.page.locator(".jp-NotebookPanel-notebook").first.bounding_box()
    return box is not None and shown is not None and box["y"] >= shown["y"] - 1 \
        and box["y"] + box["height"] <= shown["y"] + shown["height"] + 1


def button_box(panel: Any, name: str, *, relative: bool = False) -> dict[str, float]:
    """The button's box in the window, or (``relative``) from the panel's top left corner: a
    click scrolls the window, which moves every box in it but no button in the panel."""
    box = panel.locator("button.widget-button", has_text=re.compile(f"^\\s*{name}$")).first.bounding_box()
    assert box is not None, f"no {name} button"
    origin = panel.bounding_box() if relative else {"x": 0, "y": 0}
    box = {**box, "x": box["x"] - origin["x"], "y": box["y"] - origin["y"]}
    return {key: round(value) for key, value in box.items()}


def assert_near(answer: Any, button: dict[str, float]) -> None:
    """The answer's box within NEAR_PX of the button's, both ways (centre to centre)."""
    box = answer.bounding_box()
    dy = abs((box["y"] + box["height"] / 2) - (button["y"] + button["height"] / 2))
    dx = max(0.0, box["x"] - (button["x"] + button["width"]), button["x"] - (box["x"] + box["width"]))
    assert dy < NEAR_PX and dx < NEAR_PX, f"answer at {box}, button at {button}"


def screenshot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOT_DIR / name))


def expected_tab_titles() -> list[str]:
    groups: list[str] = []
    for _, spec in knobs(ServerConfig):
        if spec.widget and spec.group not in groups:
            groups.append(spec.group)
    return groups


def expected_labels() -> list[str]:
    server = [knob_label(field.name, spec) for field, spec in knobs(ServerConfig)
              if spec.widget]
    load = [knob_label(field.name, spec) for field, spec in knobs(LoadSpec) if spec.widget]
    return server + load


@pytest.mark.timeout(240)
def test_quickstart_panel_in_jupyterlab_shows_nothing_clipped(jupyterlab, browser_page, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    data_dir = tmp_path / "data"  # the jupyterlab fixture's LAB_DATA_DIR
    open_and_run_all(page, jupyterlab, "01-quickstart.ipynb")
    assert_the_checks_see_clipping(page)
    run_button = page.locator("button.widget-button.mod-primary", has_text="Run")
    expect(run_button).to_be_visible(timeout=120_000)
    panel = page.locator(".lab-panel")
    expect(panel).to_have_count(1)
    panel.scroll_into_view_if_needed()
    panel.evaluate("(root) => root.scrollIntoView({block: 'start'})")
    screenshot(page, "quickstart-1-knobs.png")

    # Tab titles and knob labels in full, as derived from the knob declarations.
    titles = panel.locator(".lm-TabBar-tabLabel").all_inner_texts()
    assert titles == expected_tab_titles()
    shown = set(panel.locator(".widget-label").all_inner_texts())
    missing = [label for label in expected_labels() if label not in shown]
    assert not missing, f"knob labels not shown: {missing}"
    assert "duration (s)" in shown and "duration_seconds" not in shown
    assert_nothing_clipped(panel, "the panel before a run")
    for title in titles:  # a hidden tab measures 0 px: each is looked at while shown
        panel.locator(".lm-TabBar-tab", has_text=title).click()
        assert_nothing_clipped(panel.locator(".widget-tab"), f"the server's {title} tab")
        if title == "buffers":
            screenshot(page, "quickstart-1b-buffers-tab.png")

    # Three short runs: as it is, with Nagle on (the notebook sends split writes: the ~40 ms
    # peak), and one against a missing page, which fails.
    knob_row(panel, "duration (s)").locator("input").fill("0.5")
    knob_row(panel, "duration (s)").locator("input").press("Tab")
    press_run_and_wait(panel)
    panel.locator(".lm-TabBar-tab", has_text="tcp").click()
    knob_row(panel, "nodelay").locator("input[type=checkbox]").uncheck()
    press_run_and_wait(panel)
    plots = panel.locator("img")
    expect(plots).to_have_count(2)
    plots.first.evaluate("(image) => image.scrollIntoView({block: 'center'})")
    screenshot(page, "quickstart-2-nagle-run.png")  # the histogram's ~40 ms peak in view
    assert_nothing_clipped(panel, "the panel after the Nagle run")
    panel.locator(".lab-live-view").evaluate("(view) => view.scrollIntoView({block: 'center'})")
    screenshot(page, "quickstart-2b-live-view.png")  # the panel's own live view of that run
    path_box = panel.locator(".widget-text", has=page.locator("label", has_text="path")).locator("input")
    path_box.fill("/no-such-page")
    path_box.press("Tab")
    press_run_and_wait(panel)

    # The failed run is red everywhere it is summed up, never green.
    message = panel.locator("span", has_text="FAILED: no request succeeded: every answer was 404").first
    expect(message).to_be_visible()
    assert message.evaluate("(span) => getComputedStyle(span).color") == "rgb(176, 0, 32)"
    failed_header = panel.locator(".lab-comparison thead th", has_text=re.compile("^run 3$"))
    assert failed_header.evaluate("(cell) => getComputedStyle(cell).color") == "rgb(176, 0, 32)"
    assert "rgb(46, 125, 50)" not in panel.locator(".widget-html", has_text="done:").evaluate_all(
        "(nodes) => nodes.map((node) => getComputedStyle(node.querySelector('span')).color).join()")

    panel.locator("h4", has_text="Last run").evaluate("(title) => title.scrollIntoView({block: 'start'})")
    screenshot(page, "quickstart-3-failed-run.png")

    # Its live view ends (it froze at "running" on a run with no success) and draws the errors.
    live = panel.locator(".lab-live-view")
    expect(live.locator("div").nth(1)).to_contain_text("done", timeout=10_000)
    assert "running" not in live.locator("div").nth(1).inner_text()
    expect(live.locator("div").nth(1)).to_contain_text("errors")
    assert live.evaluate(RED_PIXELS_JS) > 200, "no errors/s line on the live view"
    live.evaluate("(view) => view.scrollIntoView({block: 'center'})")
    screenshot(page, "quickstart-3b-failed-run-live-view.png")

    # A refused run clears that red result and names and marks the field by its label.
    duration = knob_row(panel, "duration (s)")
    duration.locator("input").fill("-1")
    duration.locator("input").press("Tab")
    panel.locator("button.widget-button.mod-primary", has_text="Run").click()
    refusal = panel.locator("span", has_text="not started: duration (s): -1")
    expect(refusal).to_be_visible(timeout=10_000)
    expect(panel.locator(".widget-html", has_text="done:")).to_have_count(0)
    expect(panel.locator(".progress-bar-danger")).to_have_count(0)
    assert "lab-invalid" in (duration.get_attribute("class") or "")
    assert duration.locator(".widget-label").first.evaluate(
        "(label) => getComputedStyle(label).color") == "rgb(176, 0, 32)"
    duration.evaluate("(row) => row.scrollIntoView({block: 'center'})")
    screenshot(page, "quickstart-3c-refused-run.png")
    duration.locator("input").fill("0.5")
    duration.locator("input").press("Tab")
    path_box.fill("/fast")
    path_box.press("Tab")

    # Overlay every run, then Save: the answer appears beside the buttons.
    pick = panel.locator("select[multiple]")
    pick.select_option(index=[0, 1, 2])
    panel.locator("button", has_text="Overlay").click()
    expect(panel.locator("img")).to_have_count(1, timeout=30_000)  # run 3 has no plots
    expect(panel.locator("span", has_text="not overlaid (no request succeeded): run 3")).to_be_visible()
    save = panel.locator("button", has_text="Save")
    save.click()
    saved = panel.locator("span", has_text="saved ")
    expect(saved).to_be_visible(timeout=30_000)
    save_box, saved_box = save.bounding_box(), saved.bounding_box()
    assert abs(saved_box["y"] - save_box["y"]) < 150, (save_box, saved_box)
    panel.locator(".lab-comparison").evaluate("(table) => table.scrollIntoView({block: 'start'})")
    screenshot(page, "quickstart-4-runs.png")
    saved.evaluate("(line) => line.scrollIntoView({block: 'center'})")
    screenshot(page, "quickstart-5-overlay.png")

    # Apply's and Export's answers appear beside their buttons, and no button moves.
    buttons = ["Apply", "Run", "Overlay", "Save", "Export", "Load"]
    before = {name: button_box(panel, name, relative=True) for name in buttons}
    panel.locator(".lm-TabBar-tab", has_text="tcp").click()
    knob_row(panel, "nodelay").locator("input[type=checkbox]").check()
    panel.locator("button", has_text="Apply").click()
    applied = panel.locator("span", has_text="applied nodelay=True")
    expect(applied).to_be_visible(timeout=10_000)
    assert_near(applied, button_box(panel, "Apply"))
    panel.locator("button", has_text="Export").click()
    exported = panel.locator("span", has_text="exported ")
    expect(exported).to_be_visible(timeout=30_000)
    assert_near(exported, button_box(panel, "Export"))
    after = {name: button_box(panel, name, relative=True) for name in buttons}
    assert after == before, f"buttons moved: {before} -> {after}"
    exported.evaluate("(line) => line.scrollIntoView({block: 'center'})")
    screenshot(page, "quickstart-5b-export-answer.png")

    # A run saved by the CLI is loaded into the panel and overlaid with the panel's first run.
    url = panel.locator(".widget-html code").first.inner_text()
    bench = subprocess.run([sys.executable, "-m", "lab", "bench", f"{url}/fast", "-c", "2", "-d", "0.5",
                            "--save", "--name", "from the cli", "--data-dir", str(data_dir)],
                           capture_output=True, text=True, timeout=120)
    assert bench.returncode == 0, bench.stderr
    saved_box = panel.locator("input[placeholder='saved run: name or id']")
    saved_box.fill("from the cli")
    panel.locator("button", has_text="Load").click()
    loaded = panel.locator("span", has_text="loaded from the cli (")
    expect(loaded).to_be_visible(timeout=30_000)
    assert_near(loaded, button_box(panel, "Load"))
    expect(panel.locator(".lab-comparison thead th", has_text=re.compile("^from the cli$"))).to_have_count(1)
    pick.select_option(label=[pick.locator("option").first.inner_text(),
                              pick.locator("option", has_text="from the cli").inner_text()])
    overlay = panel.locator("img").last
    first_overlay = overlay.get_attribute("src")
    panel.locator("button", has_text="Overlay").click()
    expect(overlay).not_to_have_attribute("src", first_overlay or "", timeout=30_000)
    expect(panel.locator("img")).to_have_count(1)
    overlay.evaluate("(image) => image.scrollIntoView({block: 'center'})")
    screenshot(page, "quickstart-6-cli-run-overlaid.png")

    # Three thresholds fit their box.
    thresholds = knob_row(panel, "thresholds").locator("input")
    thresholds.fill("p99<0.1ms, p50<1ms, errors<1%")
    assert_nothing_clipped(panel, "the panel after three runs and an overlay")
    # The notebook's own outputs above the panel (tables, plots) fit too.
    for index, output in enumerate(page.locator(".jp-OutputArea-output").all()):
        assert_nothing_clipped(output, f"output {index} of the quickstart")
    page.locator(".jp-OutputArea-output img").first.evaluate(
        "(image) => image.scrollIntoView({block: 'center'})")
    screenshot(page, "quickstart-0-notebook-plot.png")
    comparison = page.locator(".jp-OutputArea-output", has_text="the figure's ratio to nodelay on").first
    comparison.evaluate("(output) => output.scrollIntoView({block: 'start'})")
    screenshot(page, "quickstart-0b-notebook-comparison.png")
    assert "nan" not in comparison.inner_text().lower()
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert "Traceback" not in " ".join(errors.all_inner_texts())


# The live view's picture and its line of running figures, as the browser shows them now.
LIVE_SNAPSHOT_JS = """(view) => ({
  picture: view.querySelector('canvas').toDataURL(),
  figures: view.children[1].textContent,
})"""


@pytest.mark.timeout(240)
def test_live_tuning_notebook_redraws_during_the_run(jupyterlab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    open_and_run_all(page, jupyterlab, "09-live-tuning.ipynb")
    view = page.locator(".lab-live-view")
    expect(view).to_have_count(1, timeout=120_000)
    expect(view.locator("div").nth(1)).to_contain_text("running", timeout=120_000)
    # Run All leaves JupyterLab's window at the last cell; the notebook brings its live view and
    # the panel around it into the window itself while the run lasts: nothing here scrolls
    # before the run is over, and the screenshot during the run shows what a reader sees.
    panel = page.locator(".lab-panel")
    in_window: dict[str, bool] = {}

    # While the run lasts, the picture changes from one moment to the next (frames arrive
    # 6-7 times a second); collect what it showed until the run cell prints its result.
    done = page.locator(".jp-OutputArea-output", has_text="live frames drawn")
    pictures: list[str] = []
    figures: list[str] = []
    shot_during = False
    deadline = time.monotonic() + 60
    while done.count() == 0 and time.monotonic() < deadline:
        snapshot = view.evaluate(LIVE_SNAPSHOT_JS)
        if "running" in snapshot["figures"]:
            pictures.append(snapshot["picture"])
            figures.append(snapshot["figures"])
            if len(pictures) == 3:  # a moment after the scroll the run cell asked for
                in_window = {name: in_viewport(locator) for name, locator in [
                    ("live view", view), ("Run", panel.locator("button", has_text="Run").first),
                    ("Stop", panel.locator("button:enabled", has_text="Stop")),
                    ("progress", panel.locator(".widget-html", has_text="s left").first)]}
                screenshot(page, "live-0-during-run-all.png")  # what Run All shows a reader
            if not shot_during and len(pictures) >= 8:
                screenshot(page, "live-1-during-the-run.png")
                shot_during = True
        page.wait_for_timeout(200)
    assert done.count() == 1, "the run cell did not finish within 60 s"
    assert in_window and all(in_window.values()), f"not in the window during the run: {in_window}"
    assert len(pictures) >= 5, f"only {len(pictures)} looks at the live view while it ran"
    distinct = len(set(pictures))
    assert distinct >= 5, f"the canvas changed only {distinct - 1} times in {len(pictures)} looks"
    assert len(set(figures)) >= 5  # the running figures move too

    view.evaluate("(view) => view.scrollIntoView({block: 'center'})")
    screenshot(page, "live-2-after-the-run.png")  # the whole run with its two markers

    # The notebook runs to its end: its check cell prints the three stretches' medians.
    expect(page.locator(".jp-OutputArea-output", has_text="live frames")).to_have_count(2, timeout=60_000)
    timeline = page.locator(".jp-OutputArea-output img").last
    timeline.evaluate("(image) => image.scrollIntoView({block: 'center'})")
    screenshot(page, "live-3-timeline-with-markers.png")
    for index, output in enumerate(page.locator(".jp-OutputArea-output").all()):
        assert_nothing_clipped(output, f"output {index} of the live-tuning notebook")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert "Traceback" not in " ".join(errors.all_inner_texts())

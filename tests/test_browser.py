"""The quickstart as a user sees it: JupyterLab in headless Chromium, Run All, then Run on the panel.

Uses Debian's Chromium (/usr/bin/chromium) through Playwright's `executable_path`: no browser
is downloaded. JupyterLab serves a copy of the notebooks from a temporary folder, so nothing it
autosaves lands in the repository. The screenshot goes to test-output/browser/.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = ROOT / "test-output" / "browser"
# Flags that keep Chromium off the (closed) network and working as root in a container.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (scripts/setup.sh --system installs it)")
        pytest.skip("Debian's chromium is not installed")
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    port, token = free_port(), secrets.token_hex(16)
    environment = {**os.environ, "LAB_DATA_DIR": str(tmp_path / "data")}
    log = (tmp_path / "jupyterlab.log").open("w")
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
            raise RuntimeError(f"{error}:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}") from None
        yield f"{base}/lab/tree/01-quickstart.ipynb?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


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


def accept_kernel_dialog(page) -> None:
    """JupyterLab may ask which kernel to start; the notebook's own (Python 3) is preselected."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(state="visible", timeout=5_000)
    except Exception:  # no dialog this time
        return
    dialog.locator("button", has_text="Select").last.click()
    dialog.wait_for(state="hidden", timeout=10_000)


@pytest.mark.timeout(300)
def test_quickstart_runs_in_jupyterlab_and_the_panel_runs(jupyterlab):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(jupyterlab)
            expect(page.locator(".jp-NotebookPanel")).to_be_visible(timeout=60_000)
            accept_kernel_dialog(page)
            # Wait for the kernel, then Run > Run All Cells.
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
                1, timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            run_button = page.locator("button.widget-button.mod-primary", has_text="Run")
            expect(run_button).to_be_visible(timeout=120_000)
            expect(run_button).to_be_enabled(timeout=60_000)
            run_button.scroll_into_view_if_needed()
            run_button.click()

            # The run ends with its headline in the panel's message and its plots below.
            panel = page.locator(".widget-vbox", has=run_button).first  # the outermost: the whole panel
            try:
                expect(panel.get_by_text("requests in").first).to_be_visible(timeout=60_000)
            finally:
                page.screenshot(path=str(SCREENSHOT_DIR / "quickstart-panel.png"))
            expect(panel.locator("img").first).to_be_visible(timeout=30_000)
            expect(run_button).to_be_enabled(timeout=30_000)
            panel.locator("img").first.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT_DIR / "quickstart-panel.png"), full_page=False)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert "Traceback" not in " ".join(errors.all_inner_texts())
        finally:
            browser.close()

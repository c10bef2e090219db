"""``python -m lab runs|show|export|plot|compare`` on a folder of real records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from lab.cli import main
from lab.records.export import read_csv
from lab.records.record import Record
from lab.records.store import RecordStore


@pytest.fixture
def saved(store: RecordStore, open_loop_run: Record, closed_loop_run: Record) -> RecordStore:
    store.save(open_loop_run)
    store.save(closed_loop_run)
    return store


def run_cli(store: RecordStore, *arguments: str) -> int:
    return main([*arguments, "--data-dir", str(store.path)])


def test_runs_lists_the_saved_runs(saved: RecordStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(saved, "runs") == 0
    output = capsys.readouterr().out
    assert "open-stall" in output and "closed" in output and "p99_ms" in output


def test_show_prints_settings_environment_and_both_latencies(
        saved: RecordStore, open_loop_run: Record, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(saved, "show", "open-stall", "--timeline") == 0
    output = capsys.readouterr().out
    assert open_loop_run.id in output
    assert "stall_ms=30" in output and "uncorrected" in output and "p99.99 ms" in output
    assert f"{open_loop_run.summary.latency.p99:.3f}" in output
    assert "timeline" in output


@pytest.mark.parametrize("format", ["csv", "parquet", "json", "hgrm"])
def test_export_writes_each_format(format: str, saved: RecordStore, tmp_path: Path,
                                   open_loop_run: Record, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / f"out.{format}"
    assert run_cli(saved, "export", "latest", "--format", format, "-o", str(target)) == 0
    assert target.exists() and f"wrote {target}" in capsys.readouterr().out
    if format == "csv":
        assert len(read_csv(target)) == saved.load("latest").summary.requests
    if format == "json":
        assert json.loads(target.read_text())["id"] == saved.load("latest").id


def test_export_to_standard_output(saved: RecordStore, open_loop_run: Record,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(saved, "export", open_loop_run.id, "--format", "hgrm", "-o", "-") == 0
    output = capsys.readouterr().out
    assert output.startswith("       Value   Percentile")
    assert f"Total count    = {open_loop_run.summary.succeeded:12d}" in output


@pytest.mark.parametrize("kind", ["hist", "cdf", "percentiles", "timeline"])
def test_plot_writes_a_picture_of_one_or_more_runs(kind: str, saved: RecordStore, tmp_path: Path) -> None:
    target = tmp_path / f"{kind}.png"
    assert run_cli(saved, "plot", "open-stall", "closed", "--kind", kind, "-o", str(target)) == 0
    assert target.read_bytes().startswith(b"\x89PNG")


def test_compare_prints_ratios(saved: RecordStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(saved, "compare", "closed", "open-stall") == 0
    output = capsys.readouterr().out
    assert "open-stall ÷ closed" in output and "load.mode" in output


def test_python_dash_m_lab_runs_in_a_fresh_process(saved: RecordStore) -> None:
    result = subprocess.run([sys.executable, "-m", "lab", "runs", "--data-dir", str(saved.path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "open-stall" in result.stdout
    result = subprocess.run([sys.executable, "-m", "lab", "export", "nothing", "--format", "json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"LAB_DATA_DIR": str(saved.path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1 and "no record with id or name 'nothing'" in result.stderr

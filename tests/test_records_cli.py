"""``python -m lab runs|show|export|plot|compare`` on a folder of real records."""

from __future__ import annotations

import dataclasses
import datetime as dt
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


@pytest.mark.parametrize("format", ["csv", "parquet", "json", "hgrm", "hlog"])
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


def test_export_an_interval_log_to_standard_output(saved: RecordStore, open_loop_run: Record,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(saved, "export", open_loop_run.id, "--format", "hlog", "--interval", "0.2",
                   "-o", "-") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("#[StartTime: ") for line in lines)
    starts = [float(line.split(",")[1]) for line in lines if line.startswith("Tag=corrected,")]
    assert starts[:3] == [0.0, 0.2, 0.4]


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


# --- mistakes: one line naming the flag, nothing written, no traceback --------------------------

def _usage_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    output = capsys.readouterr()
    assert output.out == "" and "Traceback" not in output.err
    lines = output.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"(see python -m lab {command} --help)"), output.err
    return lines[0]


@pytest.mark.parametrize(("command", "argv", "message"), [
    ("export", ["export", "latest", "--format", "csv", "-o", "{tmp}/missing/run.csv"],
     "--output: cannot write {tmp}/missing/run.csv: the folder {tmp}/missing does not exist"),
    ("export", ["export", "latest", "-o", "{tmp}/run.xyz"],
     "--output: unknown suffix '.xyz' in {tmp}/run.xyz; use one of .csv, .parquet, .json, .hgrm, "
     ".hlog or give --format"),
    ("export", ["export", "latest"], "--format: give --format (or a -o file whose suffix names one"),
    ("export", ["export", "latest", "--format", "hlog", "--interval", "0", "-o", "{tmp}/run.hlog"],
     "--interval: must be a positive number of seconds, not 0.0"),
    ("plot", ["plot", "latest", "--kind", "cdf", "-o", "{tmp}/missing/plot.png"],
     "--output: cannot write {tmp}/missing/plot.png: the folder {tmp}/missing does not exist"),
    ("plot", ["plot", "latest", "--kind", "cdf", "-o", "{tmp}/plot.docx"],
     "--output: unknown picture format '.docx' in {tmp}/plot.docx; use .png, .svg or .pdf"),
    ("show", ["show", "latest", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_a_mistake_names_the_flag(command: str, argv: list[str], message: str, saved: RecordStore,
                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_cli(saved, *(word.format(tmp=tmp_path) for word in argv))
    assert stopped.value.code == 2
    assert _usage_error(capsys, command).startswith(
        f"python -m lab {command}: error: {message.format(tmp=tmp_path)}")
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("run.*"))


@pytest.mark.parametrize("command", ["runs", "show", "compare"])
def test_a_data_dir_that_does_not_exist_is_a_mistake_not_an_empty_store(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    references = [] if command == "runs" else ["latest"]
    with pytest.raises(SystemExit) as stopped:
        main([command, *references, "--data-dir", str(tmp_path / "typo")])
    assert stopped.value.code == 2
    assert _usage_error(capsys, command).startswith(
        f"python -m lab {command}: error: --data-dir: the folder {tmp_path / 'typo'} does not exist")


def test_the_default_export_path_of_a_very_long_name_is_a_valid_file_name(
        store: RecordStore, synthetic_record: Record, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A name of 5000 characters (written by hand, or by an older lab): the file name keeps
    the id and the start of the name."""
    long = dataclasses.replace(synthetic_record, name="x" * 5000)
    store.save(long)
    monkeypatch.chdir(tmp_path)
    assert run_cli(store, "export", "latest", "--format", "csv") == 0
    (written,) = tmp_path.glob("*.csv")
    assert written.name == f"{long.id}-{'x' * 60}.csv"
    assert "Traceback" not in capsys.readouterr().err


def test_names_with_control_characters_are_escaped_in_every_view(
        store: RecordStore, synthetic_record: Record, closed_loop_run: Record,
        capsys: pytest.CaptureFixture[str]) -> None:
    store.save(synthetic_record.replace(name="red\x1b[31m", notes="bell\x07", tags=["clear\x1b[2J"]))
    store.save(closed_loop_run)
    for argv in (["runs"], ["show", "red\x1b[31m"], ["compare", "red\x1b[31m", "closed"]):
        assert run_cli(store, *argv) == 0
        output = capsys.readouterr().out
        assert "\x1b" not in output and "\x07" not in output, argv
        assert "red\\x1b[31m" in output, argv


def test_show_uses_the_figures_of_the_summary(saved: RecordStore, open_loop_run: Record,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(saved, "show", "open-stall") == 0
    output = capsys.readouterr().out
    summary = open_loop_run.summary
    figures = f"{summary.requests} requests in {summary.duration_s:.3f} s, {summary.rps:.1f} responses/s"
    assert figures in output
    assert f"status codes: 200 {summary.status_codes['200']}" in output


# --- runs: filters, columns, JSON, a table that fits a terminal ----------------------------------

def _realistic(synthetic_record: Record, number: int, name: str, tags: list[str]) -> Record:
    """A record with every load and server setting, as bench and the panel save them."""
    from lab.engine.spec import LoadSpec
    from lab.http.config import ServerConfig
    from lab.options import as_dict

    load = as_dict(LoadSpec(url="http://127.0.0.1:8080/fast", connections=10 + 40 * (number % 2)))
    server = as_dict(ServerConfig(nodelay=number % 3 != 0))
    return Record.create(samples=synthetic_record.samples, name=name, load_spec=load,
                         server_config=server, tags=tags,
                         started_at=dt.datetime(2026, 12, 7, 20, number, tzinfo=dt.UTC))


@pytest.fixture
def listed(store: RecordStore, synthetic_record: Record) -> list[Record]:
    names = ["baseline", "nodelay off", "a name far longer than any table column should be"]
    records = [_realistic(synthetic_record, number, names[number % 3],
                          ["sweep-1"] if number < 3 else ["panel", "keep"]) for number in range(6)]
    for record in records:
        store.save(record)
    return records


def test_runs_table_fits_a_terminal_and_shows_what_differs(
        store: RecordStore, listed: list[Record], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(store, "runs") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and max(len(line) for line in lines) <= 100, "\n".join(lines)
    header = lines[0].split()
    assert header[:2] == ["id", "name"] and {"requests", "rps", "p50_ms", "p99_ms"} <= set(header)
    assert "connections" in header  # a setting that differs between the runs listed
    assert "url" not in header  # one every run shares says nothing
    assert all(record.id in line for record, line in zip(listed, lines[1:], strict=True))
    assert run_cli(store, "runs", "--all-columns") == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) > 100


def test_runs_filters_by_tag_and_name_and_keeps_the_last(
        store: RecordStore, listed: list[Record], capsys: pytest.CaptureFixture[str]) -> None:
    def ids(*argv: str) -> list[str]:
        assert run_cli(store, "runs", "--json", *argv) == 0
        return [item["id"] for item in json.loads(capsys.readouterr().out)]

    every = [record.id for record in listed]
    assert ids() == every
    assert ids("--last", "2") == every[-2:]
    assert ids("--tag", "sweep-1") == every[:3]
    assert ids("--tag", "panel", "--tag", "keep", "--last", "1") == every[-1:]
    assert ids("--name", "baseline") == [every[0], every[3]]
    assert ids("--name", "nodelay*", "--tag", "panel") == [every[4]]
    assert ids("--tag", "nothing") == []
    assert run_cli(store, "runs", "--tag", "nothing") == 0
    assert capsys.readouterr().out == "no saved run matches\n"


def test_runs_json_gives_the_figures_at_bench_json_keys(
        saved: RecordStore, closed_loop_run: Record, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(saved, "runs", "--json", "--name", "closed") == 0
    (item,) = json.loads(capsys.readouterr().out)
    printed = closed_loop_run.to_json_dict()  # what bench --json printed
    assert item["id"] == closed_loop_run.id and item["settings"]["load.connections"] == 2
    for key in ("requests", "succeeded", "rps", "errors", "status_codes"):
        assert item[key] == printed[key], key
    figures = {key: value for key, value in item["latency_ms"].items() if key != "count"}
    assert figures == printed["latency_ms"]


def test_runs_columns_are_chosen_by_name(
        store: RecordStore, listed: list[Record], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(store, "runs", "--columns", "name,nodelay,p99_ms", "--name", "baseline") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "nodelay", "p99_ms"]
    assert [line.split()[:2] for line in lines[1:]] == [["baseline", "False"]] * 2
    with pytest.raises(SystemExit) as stopped:
        run_cli(store, "runs", "--columns", "name,p99")
    assert stopped.value.code == 2
    line = _usage_error(capsys, "runs")
    assert "--columns: 'p99' is not a column; columns: id, name, started" in line and "p99_ms" in line


def test_plot_needs_only_a_run(saved: RecordStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """As export does: the kind (the percentile spectrum) and the file have defaults."""
    monkeypatch.chdir(tmp_path)
    assert run_cli(saved, "plot", "open-stall") == 0
    record = saved.load("open-stall")
    written = tmp_path / f"{record.id}-open-stall-percentiles.png"
    assert capsys.readouterr().out == f"wrote {written.name}\n"
    assert written.read_bytes().startswith(b"\x89PNG")
    assert run_cli(saved, "plot", "open-stall", "closed", "--kind", "cdf") == 0
    assert (tmp_path / f"{record.id}-open-stall-and-1-more-cdf.png").exists()

"""``python -m lab bench``: the wrk-style summary, the JSON schema, refusing remote targets."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.http.config import ServerConfig
from lab.server import ServerHandle, start_server

SUMMARY_KEYS = {"mean", "stdev", "min", "max", "p50", "p90", "p95", "p99", "p99_9", "p99_99"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with start_server(ServerConfig(), isolation="process") as handle:
        yield handle


def bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "bench", *argv], capture_output=True,
                          text=True, timeout=60)


def test_json_output_of_the_closed_loop(server: ServerHandle) -> None:
    done = bench(server.url + "/fast", "--connections", "2", "--duration", "0.5", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["mode"] == "closed"
    assert report["requests"] > 0 and report["rps"] > 0 and 0.4 < report["duration_s"] < 1.0
    assert report["errors"] == {}
    assert set(report["latency_ms"]) == SUMMARY_KEYS == set(report["ttfb_ms"])
    assert "target_rate" not in report


def test_json_output_of_the_open_loop(server: ServerHandle) -> None:
    done = bench(server.url + "/fast", "--rate", "200", "--duration", "0.5", "--json", "--no-keepalive")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["mode"] == "open" and report["target_rate"] == 200.0
    assert report["requests"] == 100 and isinstance(report["late"], int)
    assert set(report["latency_uncorrected_ms"]) == SUMMARY_KEYS


def test_text_summary_looks_like_wrk_with_both_columns_for_the_open_loop(server: ServerHandle) -> None:
    done = bench(server.url + "/fast", "--rate", "100", "--duration", "0.3")
    assert done.returncode == 0, done.stderr
    for expected in ("Latency", "Avg", "Stdev", "Max", "Requests/sec:", "corrected", "uncorrected",
                     "99.9%", "Target rate:"):
        assert expected in done.stdout


def test_errors_are_listed_by_kind_and_a_run_without_a_success_fails(server: ServerHandle) -> None:
    done = bench(server.url + "/delay/300", "--connections", "1", "--duration", "0.3", "--timeout", "0.1")
    assert done.returncode == 3, done.stderr
    assert "Errors: timeout" in done.stdout
    timeouts = done.stdout.split("Errors: timeout ")[1].split()[0]
    assert done.stderr.strip().splitlines() == [f"lab: no request succeeded: no answer: {timeouts} timeout"]


def test_a_non_loopback_url_is_refused_with_a_clear_message() -> None:
    done = bench("http://192.0.2.1/", "--duration", "1")
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--allow-remote" in done.stderr
    assert done.stdout == ""


def test_save_keeps_the_run_as_a_record_and_json_stays_one_object(server: ServerHandle,
                                                                   tmp_path) -> None:
    from lab.records.store import RecordStore

    done = bench(server.url + "/fast", "--rate", "400", "--duration", "0.5", "--json",
                 "--save", "--name", "open-400", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # nothing but the JSON object on stdout
    assert "saved run" in done.stderr
    record = RecordStore(tmp_path).load("open-400")
    assert len(record.samples) == report["requests"] == 200
    assert record.load_spec["rate"] == 400.0
    assert record.summary.latency.p50 == pytest.approx(report["latency_ms"]["p50"], rel=1e-9)


# --- exit codes -------------------------------------------------------------------------------

def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.timing
def test_a_port_where_nothing_listens_fails_within_three_seconds() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    began = time.monotonic()
    done = bench(f"http://127.0.0.1:{port}/", "-d", "30")
    assert time.monotonic() - began < 3
    assert done.returncode == 3
    assert _one_line(done.stderr).startswith("lab: no request succeeded: no answer: ")
    assert "connect_refused" in done.stderr
    assert f"nothing is listening on 127.0.0.1:{port}" in done.stdout


def test_a_server_that_goes_away_during_the_run_makes_it_incomplete_not_passed() -> None:
    """Half a run measured is not a passed run: exit 4, and the report says what happened."""
    with start_server(ServerConfig(), isolation="process") as server:
        running = subprocess.Popen([sys.executable, "-m", "lab", "bench", server.url + "/fast", "-c", "2",
                                    "-d", "20", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        # The generator's processes start (seconds on a busy machine) and measure for a while:
        # a run stopped before its first answer would be 'no success', not incomplete.
        deadline = time.monotonic() + 30
        while server.stats()["requests"] < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        server.stop()
        out, err = running.communicate(timeout=60)
    assert running.returncode == 4, err
    report = json.loads(out)
    assert report["outcome"] == "incomplete" and report["exit_code"] == 4 and report["requests"] > 0
    assert "nothing is listening" in report["reason"] and "nothing is listening" in err
    assert _one_line(err).startswith("lab: the run is incomplete: connection refused")


def test_a_run_where_every_answer_is_404_fails_and_counts_the_404s(server: ServerHandle) -> None:
    done = bench(server.url + "/no-such-page", "-c", "2", "-d", "0.3", "--json")
    assert done.returncode == 3
    assert _one_line(done.stderr) == "lab: no request succeeded: every answer was 404"
    report = json.loads(done.stdout)
    assert report["status_codes"] == {"404": report["requests"]} and report["requests"] > 0
    assert report["errors"] == {"bad_status": report["requests"]}
    assert report["outcome"] == "no_success" and report["exit_code"] == 3
    assert report["status_latency_ms"]["404"]["p50"] > 0  # the 404s were timed
    text = bench(server.url + "/no-such-page", "-c", "2", "-d", "0.3")
    assert "    404  " in text.stdout  # a line per status code


def test_thresholds_that_hold_exit_0_and_a_violated_one_exits_1(server: ServerHandle) -> None:
    held = bench(server.url + "/fast", "-c", "2", "-d", "0.3", "--threshold", "p50<10s",
                 "--threshold", "errors<1%")
    assert held.returncode == 0, held.stderr
    assert "✓ p50<10s (measured" in held.stdout and "✓ errors<1% (measured 0 %)" in held.stdout
    violated = bench(server.url + "/fast", "-c", "2", "-d", "0.3", "--threshold", "p50<10s",
                     "--threshold", "p50<1us", "--json")
    assert violated.returncode == 1
    assert _one_line(violated.stderr).startswith("lab: threshold failed: p50<1us (measured ")
    checks = json.loads(violated.stdout)["thresholds"]
    assert [(c["expression"], c["held"], c["unit"]) for c in checks] == [
        ("p50<10s", True, "s"), ("p50<1us", False, "us")]
    assert checks[1]["measured"] > 1


# --- mistakes are one line naming the flag, before any run ------------------------------------

def _usage_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("(see python -m lab bench --help)"), done.stderr
    return lines[0]


@pytest.mark.parametrize(("argv", "message"), [
    (["--threshold", "p50<<1"], "--threshold: 'p50<<1' is not FIGURE<NUMBER[UNIT]"),
    (["-c", "0"], "--connections: 0 is out of range; allowed: 1 to 10,000"),
    (["--timeout", "2h"], "--timeout: 7200.0 is out of range; allowed: 0.001 to 3,600 s"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["-H", "no colon"], "--header: 'no colon' is not 'Name: value'"),
    (["--save", "--name", " "], "--name: must not be empty"),
    (["--save", "--name", "x" * 5000], "--name: 5000 characters is too long; at most 200"),
    (["--rate", "100", "--think", "5"], "--think: think time applies to the closed loop only"),
    (["--think", "-1"], "--think: -1.0 is out of range; allowed: 0 to 3,600,000 ms"),
])
def test_a_mistake_is_one_line_naming_the_flag_and_nothing_runs(argv: list[str], message: str) -> None:
    began = time.monotonic()
    done = bench("http://127.0.0.1:9/", "-d", "60", *argv)
    assert time.monotonic() - began < 30  # the 60 s run never started
    assert _usage_error(done).startswith(f"python -m lab bench: error: {message}")


def test_an_unwritable_data_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = bench("http://127.0.0.1:9/", "-d", "60", "--save", "--data-dir", str(blocker / "data"))
    assert _usage_error(done) == (f"python -m lab bench: error: --data-dir: cannot save records "
                                  f"in {blocker / 'data'}: Not a directory (see python -m lab bench --help)")


def test_wrk_habits_are_accepted(server: ServerHandle) -> None:
    closed = json.loads(bench(server.url + "/fast", "-c", "3", "-t", "1", "-d", "300ms", "--json").stdout)
    assert (closed["connections"], closed["workers"], closed["mode"]) == (3, 1, "closed")
    assert 0.3 <= closed["duration_s"] < 1.0
    opened = json.loads(bench(server.url + "/fast", "-R", "100", "-d", "0.3", "--json").stdout)
    assert (opened["mode"], opened["target_rate"], opened["requests"]) == ("open", 100.0, 30)
    # oha's and ab's -n: the run ends after that many requests
    counted = json.loads(bench(server.url + "/fast", "-c", "2", "-n", "40", "--json").stdout)
    assert counted["requests"] == 40
    # wrk prints its percentile table only with --latency; the lab always does, and takes it
    with_latency = bench(server.url + "/fast", "-c", "2", "-d", "0.2", "--latency")
    assert with_latency.returncode == 0, with_latency.stderr
    assert "Latency Distribution (ms)" in with_latency.stdout and "99.9%" in with_latency.stdout


def test_help_documents_exit_codes_and_readable_ranges() -> None:
    text = bench("--help").stdout
    assert "exit codes:" in text and "3  no request succeeded" in text and "1  a --threshold failed" in text
    assert "[on or off; default: on]" in text
    # The metavar is N; Python 3.13's argparse names it once per option ("-c, --connections N").
    assert re.search(r"-c( N)?, --connections N\b", text)
    assert "e+" not in text  # no 1e+07 for a rate
    serve = subprocess.run([sys.executable, "-m", "lab", "serve", "--help"], capture_output=True,
                           text=True, timeout=60).stdout
    assert "[1 KiB to 64 MiB (or none)" in " ".join(serve.split())


# --- one run, one set of figures ----------------------------------------------------------------

@pytest.mark.parametrize("load", [["-c", "4", "-d", "0.5", "--warmup", "0.2"],
                                  ["-c", "4", "--stage", "0.3s:200", "--stage", "0.3s:0-400"],
                                  ["-c", "4", "-d", "0.5", "--hiccup-meter"]],
                         ids=["warm-up", "stages", "generator hiccups"])
def test_show_json_prints_what_bench_json_printed(load: list[str], server: ServerHandle,
                                                  tmp_path: Path) -> None:
    done = bench(server.url + "/fast", *load, "--json",
                 "--save", "--name", "same-run", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    shown = subprocess.run([sys.executable, "-m", "lab", "show", "same-run", "--json", "--data-dir",
                            str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    again = json.loads(shown.stdout)
    for key in ("requests", "rps", "duration_s", "latency_ms", "errors"):
        assert again[key] == printed[key], key
    assert again == printed  # and everything else too
    # the JSON export: the same figures at the same keys (p99 at latency_ms.p99), one shape
    exported = subprocess.run([sys.executable, "-m", "lab", "export", "same-run", "--format", "json",
                               "-o", "-", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                              timeout=60)
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document["latency_ms"]["p99"] == printed["latency_ms"]["p99"]
    assert {key: document[key] for key in printed} == printed
    from lab.measure.figures import UNSUPPORTED
    from lab.records.store import RecordStore

    row = RecordStore(tmp_path).runs().set_index("name").loc["same-run"]
    # a p99 the run's requests cannot support is null in the JSON and marked in the listing
    unsupported = "latency_ms.p99" in printed["unsupported_percentiles"]
    p99 = UNSUPPORTED if unsupported else printed["latency_ms"]["p99"]
    assert (row["requests"], row["rps"], row["p99_ms"]) == (printed["requests"], printed["rps"], p99)


def test_connect_time_is_shown_when_the_run_opened_connections(server: ServerHandle, tmp_path: Path) -> None:
    fresh = bench(server.url + "/fast", "-c", "2", "-d", "0.3", "--no-keepalive").stdout
    assert "    Connect " in fresh
    # keep-alive connections opened before the run: each one's connect time rides on its first
    # request's row (charged to no latency), so a keep-alive run reports them too
    kept = json.loads(bench(server.url + "/fast", "-c", "10", "-d", "0.3", "--json", "--save",
                            "--data-dir", str(tmp_path)).stdout)
    assert kept["connect_ms"]["mean"] is not None and kept["connect_ms"]["max"] > 0
    from lab.records.store import RecordStore

    assert RecordStore(tmp_path).load("latest").summary.connect.count == 10  # show's "count"
    assert "    Connect " in bench(server.url + "/fast", "-c", "2", "-d", "0.3").stdout
    with_load = bench(server.url + "/fast", "-c", "2", "-d", "0.3", "--connect", "with-load").stdout
    assert "    Connect " in with_load  # wrk's pattern: opened as the run starts, first requests wait


def test_names_with_control_characters_are_printed_escaped(server: ServerHandle, tmp_path: Path) -> None:
    done = bench(server.url + "/fast", "-c", "1", "-d", "0.2", "--save", "--name", "red\x1b[31m",
                 "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "(red\\x1b[31m)" in done.stdout
    listed = subprocess.run([sys.executable, "-m", "lab", "runs", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert "\x1b" not in listed.stdout and "red\\x1b[31m" in listed.stdout


@pytest.mark.timing
def test_a_progress_line_goes_to_a_terminal_once_the_run_lasts_a_second(server: ServerHandle) -> None:
    controller, terminal = os.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "lab", "bench", server.url + "/fast", "-c", "2",
                               "-d", "1.6"], stdout=subprocess.PIPE, stderr=terminal, text=True,
                              timeout=60)
        os.close(terminal)
        seen = b""
        with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed
            while chunk := os.read(controller, 4096):
                seen += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0
    assert b"running: " in seen and b"req/s" in seen
    assert "running: " not in done.stdout


# --- an overloaded open loop reports what it achieved, not what it asked for --------------------

@pytest.mark.timing
def test_an_overloaded_open_loop_reports_the_rate_achieved(server: ServerHandle) -> None:
    closed = json.loads(bench(server.url + "/fast", "-c", "50", "-d", "1", "--json").stdout)
    capacity = closed["rps"]
    target = round(5 * capacity)
    report = bench(server.url + "/fast", "-c", "50", "-R", str(target), "-d", "1.5", "--timeout", "1",
                   "--json")
    overloaded = json.loads(report.stdout)
    assert overloaded["target_rate"] == target
    # The rate achieved, not the rate asked (five times the capacity): a bound with room for
    # the machine to be twice as fast as when the capacity was measured (a shared machine is).
    assert overloaded["rps"] <= 0.5 * target, (overloaded["rps"], capacity)
    assert overloaded["duration_s"] > 1.5  # the drain after the offering is part of the run
    assert overloaded["kept_up"] is False and overloaded["late_share"] > 0.5

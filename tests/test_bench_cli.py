"""``python -m lab bench``: the wrk-style summary, the JSON schema, refusing remote targets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

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
    assert done.stderr.strip().splitlines() == [
        f"lab: no request succeeded: no answer: {done.stdout.split('Errors: timeout ')[1].split()[0]} timeout"]


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

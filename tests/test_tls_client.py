"""The generator over TLS (https://, wss://): the handshake timed per new connection
(``tls_ms``), what it negotiated in ``--json`` and the record, resumption, and every way a
handshake fails ending as ``tls_failed`` with its reason, in bounded time.

Servers are real, on 127.0.0.1 (tests/tls_servers.py, and the lab's own server with --tls),
with the lab's certificates. Runs started here name the lab's CA as ``ca_file``, and the lab's
server runs in a thread of this process: worker processes come from a fork server that keeps
the environment it started with, so a ``LAB_TLS_DIR`` another test module set for a while
must not decide which CA a process trusts or signs with. The CLI tests run in a fresh
process and check the default: the lab's CA trusted with no flag.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trustme
from tls_servers import (
    Hangup,
    Responder,
    https_server,
    serving,
    stalled_handshake_server,
    wss_echo_server,
)

from lab.engine.secure import failure_reason
from lab.engine.spec import LoadSpec
from lab.http.config import ServerConfig
from lab.loadgen import run_load
from lab.measure.report import describe_lines
from lab.measure.samples import MISSING, SAMPLE_DTYPE, ErrorKind
from lab.netpath import missing_privilege
from lab.records.experiment import save_result
from lab.records.store import RecordStore
from lab.server import ServerHandle, start_server
from lab.tls import lab_ca_file, server_context

CA = str(lab_ca_file())


def https(port: int, **settings: object) -> LoadSpec:
    values: dict[str, object] = {"url": f"https://127.0.0.1:{port}/", "connections": 2,
                                 "duration_seconds": 0.4, "ca_file": CA, **settings}
    return LoadSpec(**values)  # type: ignore[arg-type]


def handshaken(samples: np.ndarray) -> np.ndarray:
    return samples[samples["tls_ns"] != MISSING]


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    with https_server() as port:
        yield port


def test_each_new_connection_has_its_handshake_time_and_reused_ones_have_none(server_port: int) -> None:
    # with-load: each lane's first request opens its connection in the run; the rest reuse it
    result = run_load(https(server_port, connect="with-load"))
    samples = result.samples
    assert result.summary.errors == {} and samples.size > 10
    opened = samples[samples["connect_ns"] != MISSING]
    assert len(opened) == 2 and np.all(opened["tls_ns"] > 0) and np.all(opened["tls_resumed"] == 0)
    reused = samples[samples["connect_ns"] == MISSING]
    assert np.all(reused["tls_ns"] == MISSING) and np.all(reused["tls_resumed"] == MISSING)
    assert result.summary.tls.count == 2
    document = result.to_json_dict()
    assert document["tls_ms"]["max"] == pytest.approx(opened["tls_ns"].max() / 1e6)
    assert "tls_ms.p50" in document["unsupported_percentiles"]  # two handshakes support no percentile


def test_connections_opened_before_the_run_report_their_handshakes_outside_latency(server_port: int) -> None:
    """The default (connect before the load): each connection's TCP connect and handshake on its
    first request's row, as connect times are (issue 26), neither inside a latency."""
    result = run_load(https(server_port, connections=3))
    samples = result.samples
    assert result.summary.errors == {}
    first = handshaken(samples)
    assert len(first) == 3 and np.all(first["connect_ns"] != MISSING) and np.all(first["tls_ns"] > 0)
    assert result.summary.tls.count == 3


def test_without_keep_alive_every_request_pays_a_handshake(server_port: int) -> None:
    result = run_load(https(server_port, keepalive=False))
    ok = result.samples[result.samples["error"] == ErrorKind.NONE]
    assert ok.size > 5 and np.all(ok["tls_ns"] > 0) and np.all(ok["connect_ns"] > 0)
    assert result.summary.tls.count == ok.size


def test_version_and_cipher_are_in_the_json_and_the_record(server_port: int, tmp_path: Path) -> None:
    result = run_load(https(server_port))
    tls = result.to_json_dict()["tls"]
    assert tls["version"] == "TLSv1.3" and tls["cipher"].startswith("TLS_")
    assert tls["handshakes"] == 2 and tls["versions"] == {"TLSv1.3": 2} and tls["failures"] == {}
    store = RecordStore(tmp_path)
    record = save_result(result, name="tls", store=store)
    loaded = store.load(record.id)
    assert loaded.outcome is not None and loaded.outcome.tls == result.outcome.tls
    assert np.array_equal(loaded.samples["tls_ns"], result.samples["tls_ns"])
    shown = describe_lines(loaded.summary, loaded.load_spec, loaded.outcome)  # what `show` prints
    assert "TLS: 2 handshakes, TLSv1.3 TLS_" in "\n".join(shown)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_resume_resumes_where_the_server_allows_it(version: str) -> None:
    with https_server(max_version=version) as port:
        result = run_load(https(port, keepalive=False, tls_resume=True, connections=1))
    tls = result.to_json_dict()["tls"]
    assert tls["version"] == f"TLSv{version}" and tls["handshakes"] > 5
    # every connection but the first offers the session of one before it
    assert tls["resumed"] == tls["handshakes"] - 1, tls
    resumed = handshaken(result.samples)["tls_resumed"]
    assert set(resumed.tolist()) == {0, 1} and int(resumed.sum()) == tls["resumed"]


@pytest.mark.parametrize(("version", "tickets", "resume"), [
    ("1.3", False, True),  # the server keeps no session
    ("1.2", False, True),
    ("1.3", True, False),  # the client offers none
])
def test_no_resumption_without_tickets_or_without_tls_resume(version: str, tickets: bool,
                                                              resume: bool) -> None:
    with https_server(max_version=version, session_tickets=tickets) as port:
        result = run_load(https(port, keepalive=False, tls_resume=resume, connections=1))
    tls = result.to_json_dict()["tls"]
    assert tls["handshakes"] > 5 and tls["resumed"] == 0 and tls["resumed_share"] == 0.0
    assert np.all(handshaken(result.samples)["tls_resumed"] == 0)


def test_wss_messages_go_over_tls_with_the_handshake_apart_from_the_upgrade() -> None:
    with wss_echo_server() as port:
        result = run_load(LoadSpec(url=f"wss://127.0.0.1:{port}/", connections=2, connect="with-load",
                                   duration_seconds=0.4, ca_file=CA))
    samples = result.samples
    assert result.summary.errors == {} and samples.size > 10 and set(samples["status"].tolist()) == {101}
    opened = samples[samples["connect_ns"] != MISSING]
    assert len(opened) == 2 and np.all(opened["tls_ns"] > 0)
    assert np.all(samples[samples["connect_ns"] == MISSING]["tls_ns"] == MISSING)
    assert result.to_json_dict()["tls"]["version"] == "TLSv1.3"


def test_a_dask_run_reports_tls_as_a_local_one_does(server_port: int) -> None:
    pytest.importorskip("distributed")
    result = run_load(https(server_port, keepalive=False, tls_resume=True), cluster="local:1")
    tls = result.to_json_dict()["tls"]
    assert result.summary.errors == {} and tls["version"] == "TLSv1.3"
    assert tls["handshakes"] >= result.summary.tls.count > 5 and tls["resumed"] > 0


@pytest.fixture(scope="module")
def foreign_port() -> Iterator[int]:
    """A TLS server whose certificate comes from a CA the lab does not know."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    with serving(Responder, context) as port:
        yield port


def test_a_certificate_from_another_ca_fails_as_tls_failed_naming_the_reason(foreign_port: int) -> None:
    began = time.monotonic()
    result = run_load(https(foreign_port, duration_seconds=5))
    assert time.monotonic() - began < 4  # given up at once, not retried for the whole duration
    assert set(result.summary.errors) == {"tls_failed"} and result.summary.succeeded == 0
    failures = result.to_json_dict()["tls"]["failures"]
    assert list(failures) == [
        "certificate: unable to get local issuer certificate (--insecure skips the check)"]
    assert any("--insecure" in problem for problem in result.problems)


def test_insecure_accepts_that_certificate(foreign_port: int) -> None:
    result = run_load(https(foreign_port, ca_file="", insecure=True))
    assert result.summary.errors == {} and result.summary.succeeded > 0
    assert result.to_json_dict()["tls"]["version"] == "TLSv1.3"


def test_a_server_that_never_answers_the_handshake_ends_in_bounded_time() -> None:
    with stalled_handshake_server() as port:
        began = time.monotonic()
        result = run_load(https(port, duration_seconds=3, timeout_seconds=0.3, keepalive=False))
        took = time.monotonic() - began
    assert took < 3  # process start, the connect-ahead bound, one timeout: not the duration
    assert set(result.summary.errors) == {"tls_failed"}
    failures = result.to_json_dict()["tls"]["failures"]
    assert list(failures) == ["timeout: the handshake did not end within 0.3 s"]


def test_a_server_that_hangs_up_on_the_hello_fails_as_closed() -> None:
    with serving(Hangup) as port:
        result = run_load(https(port, duration_seconds=3))
    assert set(result.summary.errors) == {"tls_failed"}
    assert list(result.to_json_dict()["tls"]["failures"]) == [
        "closed: the server closed the connection during the handshake"]


def test_no_common_version_is_named_a_version_failure() -> None:
    """A real handshake between a client held to TLS 1.2 and a server that asks for 1.3, over
    memory: the error OpenSSL raises is the one the generator sorts."""
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(CA)
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server, server_hostname="localhost")
    server = server_context(min_version="1.3").wrap_bio(server_in, server_out, server_side=True)
    failure: ssl.SSLError | None = None
    for _ in range(4):  # the hello, its answer...: until one side gives up
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as error:
                failure = failure or error
        server_in.write(to_server.read())
        to_client.write(server_out.read())
        if failure is not None:
            break
    assert failure is not None
    assert failure_reason(failure, 5.0).startswith("version: no TLS version both ends accept"), failure


@pytest.fixture(scope="module")
def plain_server() -> Iterator[ServerHandle]:
    with start_server(ServerConfig(), isolation="process") as handle:
        yield handle


def test_a_plain_http_server_on_an_https_target_fails_clearly(plain_server: ServerHandle) -> None:
    result = run_load(https(plain_server.port, duration_seconds=3))
    assert set(result.summary.errors) == {"tls_failed"}
    reason = "not TLS: the server did not answer the handshake in TLS (a plain-HTTP port?)"
    assert list(result.to_json_dict()["tls"]["failures"]) == [reason]


def bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "bench", *argv], capture_output=True,
                          text=True, timeout=60)


def test_bench_trusts_the_lab_ca_by_itself_and_reports_tls(server_port: int) -> None:
    done = bench(f"https://127.0.0.1:{server_port}/", "-c", "2", "-d", "0.3", "--no-keepalive",
                 "--tls-resume", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["errors"] == {} and report["tls"]["version"] == "TLSv1.3"
    assert report["tls"]["resumed_share"] > 0.5 and report["tls_ms"]["max"] > 0
    text = bench(f"https://127.0.0.1:{server_port}/", "-c", "2", "-d", "0.3", "--no-keepalive")
    assert text.returncode == 0, text.stderr
    assert "TLS: " in text.stdout and "TLSv1.3" in text.stdout


def test_bench_says_in_one_line_that_insecure_skips_the_check(foreign_port: int) -> None:
    done = bench(f"https://127.0.0.1:{foreign_port}/", "-c", "2", "-d", "2")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lab: ") and "certificate" in last and "--insecure" in last
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"), (b"not a certificate", "")])  # (lab.tls words the second)
def test_a_ca_file_that_is_not_one_is_a_usage_error_before_the_run(tmp_path: Path, content: bytes | None,
                                                                    message: str) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    done = bench("https://127.0.0.1:1/", "--ca-file", str(ca_file), "-d", "0.1")
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1  # nothing ran; one line
    assert f"--ca-file: {message}" in done.stderr


def test_tls_settings_on_a_plain_target_are_refused_naming_the_flag() -> None:
    done = bench("http://127.0.0.1:1/", "--tls-resume", "-d", "0.1")
    assert done.returncode == 2 and "--tls-resume: applies to https://" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_record_saved_before_the_tls_columns_reads_back_with_them_missing(tmp_path: Path,
                                                                            server_port: int) -> None:
    result = run_load(https(server_port, keepalive=False))
    store = RecordStore(tmp_path)
    record = save_result(result, name="old", store=store)
    # Written as a lab without the TLS columns wrote its samples.
    old_dtype = np.dtype([(name, SAMPLE_DTYPE[name]) for name in SAMPLE_DTYPE.names or ()
                          if name not in ("tls_ns", "tls_resumed")])
    old = np.zeros(result.samples.size, dtype=old_dtype)
    for name in old_dtype.names or ():
        old[name] = result.samples[name]
    directory = tmp_path / record.id
    samples_file = directory / "samples.npy"
    np.save(samples_file, old)
    metadata = json.loads((directory / "record.json").read_text())
    digest = hashlib.sha256(samples_file.read_bytes()).hexdigest()
    metadata["samples"]["sha256"] = digest
    metadata["samples"]["summary_sha256"] = None
    (directory / "record.json").write_text(json.dumps(metadata))
    loaded = store.load(record.id)
    assert loaded.samples.dtype == SAMPLE_DTYPE and loaded.samples.size == result.samples.size
    assert np.all(loaded.samples["tls_ns"] == MISSING) and np.all(loaded.samples["tls_resumed"] == MISSING)
    assert np.array_equal(loaded.samples["done_ns"], result.samples["done_ns"])


# --- against the lab's own server (serve --tls): each knob read back from the client side ------

@pytest.mark.parametrize(("knobs", "version", "cipher_mark", "resumes"), [
    ({}, "TLSv1.3", "TLS_", True),
    ({"tls_max_version": "1.2"}, "TLSv1.2", "ECDHE-ECDSA-", True),
    ({"tls_max_version": "1.2", "tls_key_type": "rsa-2048"}, "TLSv1.2", "ECDHE-RSA-", True),
    ({"tls_session_tickets": False}, "TLSv1.3", "TLS_", False),
    ({"tls_max_version": "1.2", "tls_session_tickets": False}, "TLSv1.2", "ECDHE-ECDSA-", False),
])
def test_serve_tls_knobs_show_in_what_the_generator_negotiated(knobs: dict[str, object], version: str,
                                                               cipher_mark: str, resumes: bool) -> None:
    with start_server(ServerConfig(tls=True, **knobs)) as server:  # type: ignore[arg-type]
        assert server.url.startswith("https://")
        result = run_load(LoadSpec(url=server.url + "/fast", connections=1, duration_seconds=0.4,
                                   keepalive=False, tls_resume=True, ca_file=CA))
    tls = result.to_json_dict()["tls"]
    assert result.summary.errors == {} and result.summary.succeeded > 3
    assert tls["version"] == version and tls["cipher"].startswith(cipher_mark), tls
    ok = result.samples[result.samples["error"] == ErrorKind.NONE]
    assert np.all(ok["tls_ns"] > 0)  # every request opened a connection: each has its handshake
    assert (tls["resumed"] == tls["handshakes"] - 1) if resumes else tls["resumed"] == 0


def test_wss_to_serve_tls_echoes_over_tls() -> None:
    with start_server(ServerConfig(tls=True)) as server:
        url = server.url.replace("https://", "wss://") + "/ws/echo"
        result = run_load(LoadSpec(url=url, connections=2, connect="with-load", duration_seconds=0.4,
                                   ca_file=CA, tls_resume=True))
    assert result.summary.errors == {} and result.summary.succeeded > 10
    assert result.to_json_dict()["tls"]["version"] == "TLSv1.3"
    assert np.count_nonzero(result.samples["tls_ns"] != MISSING) == 2


# --- round trips over an emulated 20 ms path (issue 25, done-when item 2) ----------------------

NO_PATH = missing_privilege()
RTT_MS = 40  # delay=20ms each way


def phases_ms(url: str, requests: int, **settings: object) -> dict[str, np.ndarray]:
    """Per request at one connection, in ms: TCP connect, TLS handshake, send to answer, and
    the whole time to the first answer of a new connection."""
    spec = LoadSpec(url=url, connections=1, max_requests=requests, duration_seconds=60,
                    timeout_seconds=10, ca_file=CA, **settings)  # type: ignore[arg-type]
    result = run_load(spec)
    samples = result.measured_samples()
    assert result.summary.errors == {}, result.summary.errors
    assert len(samples) == requests
    answer = (samples["done_ns"] - samples["sent_ns"]) / 1e6
    phases = {"answer": answer, "resumed": samples["tls_resumed"]}
    if not settings.get("keepalive", True):
        phases.update(connect=samples["connect_ns"] / 1e6, tls=samples["tls_ns"] / 1e6)
        phases["first_answer"] = phases["connect"] + phases["tls"] + answer
    return phases


def rtts(milliseconds: np.ndarray) -> float:
    return float(np.median(milliseconds)) / RTT_MS


@pytest.mark.skipif(NO_PATH is not None, reason=f"emulated path: {NO_PATH}")
@pytest.mark.timing
def test_round_trips_of_a_new_tls_connection_over_a_20ms_path() -> None:
    with start_server(tls=True, path="delay=20ms") as server:
        url = server.url + "/fast"
        kept = phases_ms(url, 30)
        tls13 = phases_ms(url, 8, keepalive=False)
    with start_server(tls=True, tls_max_version="1.2", path="delay=20ms") as server:
        url = server.url + "/fast"
        tls12 = phases_ms(url, 8, keepalive=False)
        resumed = phases_ms(url, 9, keepalive=False, tls_resume=True)
    assert np.all(resumed["resumed"][1:] == 1)  # every connection after the first resumed
    resumed = {name: values[1:] for name, values in resumed.items()}
    print(f"delay=20ms, first answer of a new connection: TLS 1.3 {np.median(tls13['first_answer']):.1f} ms, "
          f"TLS 1.2 {np.median(tls12['first_answer']):.1f} ms, resumed TLS 1.2 "
          f"{np.median(resumed['first_answer']):.1f} ms; keep-alive {np.median(kept['answer']):.1f} ms")
    # Bands as tests/test_netpath.py's: an RTT is 38-50 ms here, the relay adding ~1 ms a trip.
    assert 0.95 <= rtts(kept["answer"]) <= 1.25  # keep-alive: 1 RTT
    for phases in (tls13, tls12, resumed):
        assert 0.95 <= rtts(phases["connect"]) <= 1.25  # TCP: 1 RTT
        assert 0.95 <= rtts(phases["answer"]) <= 1.25  # the request itself: 1 RTT
    assert 0.95 <= rtts(tls13["tls"]) <= 1.25  # TLS 1.3: 1 RTT
    assert 1.95 <= rtts(tls12["tls"]) <= 2.4  # TLS 1.2: 2 RTT
    assert 0.95 <= rtts(resumed["tls"]) <= 1.25  # TLS 1.2 resumed: 1 RTT
    assert 2.95 <= rtts(tls13["first_answer"]) <= 3.5  # ~120 ms
    assert 3.95 <= rtts(tls12["first_answer"]) <= 4.6  # ~160 ms
    assert 2.95 <= rtts(resumed["first_answer"]) <= 3.5

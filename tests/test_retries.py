"""Retries, backoff, retry budgets and per-request deadlines in the generator, against the lab
server's /backend (lab/http/backend.py) shedding, queueing or dropping on purpose."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

import lab
from lab.engine.plan import BACKOFF_CAP_NS, RetryPolicy
from lab.engine.spec import LoadSpec
from lab.errors import ConfigError
from lab.measure.samples import ErrorKind, start_ns
from lab.units import NS_PER_MS


def bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "bench", *argv], capture_output=True,
                          text=True, timeout=60)


def requests_of(samples: np.ndarray) -> dict[int, np.ndarray]:
    """Each request's attempts, by its start (a retry's intended time is its request's)."""
    starts = start_ns(samples)
    return {int(start): samples[starts == start] for start in np.unique(starts)}


def test_retries_against_a_server_shedding_half_add_up(lab_server):
    server = lab_server(backend_shed_percent=50, backend_service_ms=0)
    done = bench(server.url + "/backend", "--rate", "400", "--duration", "1", "--connections", "8",
                 "--retries", "2", "--backoff", "none", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    goodput = report["goodput"]
    assert report["requests"] == goodput["attempts"]  # every attempt is a sample
    # the schedule's, whatever the retries (a late dispatcher may miss the last few: see below)
    assert 390 <= goodput["requests"] <= 400
    assert goodput["attempts"] == goodput["requests"] + goodput["retries"]
    assert goodput["retry_share"] == pytest.approx(goodput["retries"] / goodput["attempts"])
    assert goodput["good"] == report["status_codes"]["200"]
    # Each attempt is refused with probability 1/2: 1/8 of the requests fail all three, and
    # retries are 0.75 of the 1.75 attempts a request makes on average (0.43 of the load).
    failed_share = 1 - goodput["good"] / goodput["requests"]
    assert 0.05 < failed_share < 0.25
    assert 0.33 < goodput["retry_share"] < 0.52
    stats = server.stats()
    assert stats["backend_served"] + stats["backend_shed"] == goodput["attempts"]
    assert stats["backend_served"] == goodput["good"]


def test_every_retry_is_a_sample_timed_from_its_requests_start(lab_server):
    server = lab_server(backend_shed_percent=50, backend_service_ms=0)
    for mode in ({"mode": "open", "rate": 300.0}, {"mode": "closed"}):
        result = lab.run_load(LoadSpec(url=server.url + "/backend", connections=4, duration_seconds=0.6,
                                       retries=3, backoff="exponential", backoff_ms=2, **mode))
        samples = result.samples
        assert np.any(samples["attempt"] == 3)
        for attempts in requests_of(samples).values():
            numbers = np.sort(attempts["attempt"])
            assert list(numbers) == list(range(len(attempts))), mode  # one request, 0..n
            first = attempts[attempts["attempt"] == 0]
            retries = attempts[attempts["attempt"] > 0]
            # a retry goes out after the attempt before it ended, and after its backoff
            assert np.all(retries["sent_ns"] > first["done_ns"][0])
            # only the last attempt may succeed, and nothing follows a success
            last = attempts[np.argmax(attempts["attempt"])]
            assert np.count_nonzero(attempts["error"] == ErrorKind.NONE) <= 1
            # (or the run ended before its retry: no retry starts once the load stops)
            assert (last["error"] == ErrorKind.NONE or len(attempts) == 4
                    or last["done_ns"] > result.end_ns - 20 * NS_PER_MS)
        summary = result.summary
        assert summary.goodput is not None and summary.open_loop == (mode["mode"] == "open")
        # lateness is of first attempts: retries wait out their backoff on purpose
        if summary.open_loop:
            assert summary.late is not None and summary.late <= summary.goodput.requests


def test_the_deadline_bounds_a_requests_time_across_its_attempts(lab_server):
    # every attempt waits 400 ms for its answer; the request may take 250 ms in all
    server = lab_server(backend_workers=100, backend_service_ms=400)
    result = lab.run_load(LoadSpec(url=server.url + "/backend", mode="open", rate=40, connections=20,
                                   duration_seconds=1, timeout_seconds=0.1, retries=5,
                                   backoff="none", deadline_seconds=0.25))
    samples = result.samples
    ends = {start: attempts["done_ns"].max() - start for start, attempts in requests_of(samples).items()}
    assert len(ends) == 40
    # each attempt times out at 100 ms: the third is cut by the deadline, and no fourth starts
    assert max(ends.values()) < 250 * NS_PER_MS + 60 * NS_PER_MS
    assert np.all(samples["attempt"] <= 2)
    assert set(np.unique(samples["error"])) == {ErrorKind.TIMEOUT, ErrorKind.DEADLINE}
    goodput = result.summary.goodput
    assert goodput is not None and goodput.good == 0 and goodput.deadline_ms == 250


def test_a_retry_budget_bounds_the_retries(lab_server):
    server = lab_server(backend_shed_percent=100)
    result = lab.run_load(LoadSpec(url=server.url + "/backend", mode="open", rate=400, connections=8,
                                   duration_seconds=1, retries=3, backoff="none",
                                   retry_budget_percent=10))
    goodput = result.summary.goodput
    assert goodput is not None and 390 <= goodput.requests <= 400
    # 10 % of 400 requests, and the 10 retries the bucket starts with; without the budget,
    # every request would be retried three times (1,200 retries)
    assert goodput.retries <= 0.1 * 400 + 10 + 1
    assert goodput.retries >= 0.1 * 400 - 5


def test_the_queue_order_decides_how_many_requests_are_answered_in_time(lab_server):
    # Past capacity (2 workers x 5 ms = 400/s, asked 600/s): FIFO makes every request wait
    # the whole queue, past its deadline; LIFO serves the newest, CoDel drops the stale.
    within: dict[str, float] = {}
    for order in ("fifo", "lifo", "codel"):
        server = lab_server(backend_workers=2, backend_service_ms=5, backend_queue=order)
        result = lab.run_load(LoadSpec(url=server.url + "/backend", mode="open", rate=600,
                                       connections=64, duration_seconds=2, deadline_seconds=0.1))
        goodput = result.summary.goodput
        # (not == 1200: on a loaded machine the engine's housekeeping may end the offering
        # while its dispatcher, late, has not yet sent the last few requests due)
        assert goodput is not None and goodput.requests >= 1150, (result.outcome, result.summary.errors)
        within[order] = goodput.good_share
        server.stop()
    assert within["lifo"] > 2 * within["fifo"], within
    assert within["codel"] > 2 * within["fifo"], within


def test_backoff_doubles_up_to_its_cap_and_full_jitter_draws_below_it():
    def policy(backoff: str) -> RetryPolicy:
        return RetryPolicy.of(5, frozenset({"5xx"}), backoff, 10 * NS_PER_MS, None, None)

    draw = random.Random(1)
    assert [policy("exponential").backoff_before(n, draw) // NS_PER_MS for n in (1, 2, 3)] == [10, 20, 40]
    assert policy("exponential").backoff_before(30, draw) == BACKOFF_CAP_NS
    assert policy("none").backoff_before(3, draw) == 0
    jittered = [policy("full-jitter").backoff_before(3, draw) for _ in range(200)]
    assert 0 <= min(jittered) < 10 * NS_PER_MS and 30 * NS_PER_MS < max(jittered) <= 40 * NS_PER_MS


def test_which_failures_are_retried():
    policy = RetryPolicy.of(1, frozenset({"5xx", "timeout"}), "none", 0, None, None)
    assert policy.retries_failure(ErrorKind.BAD_STATUS, 503)
    assert not policy.retries_failure(ErrorKind.BAD_STATUS, 404)  # the caller's mistake stays one
    assert policy.retries_failure(ErrorKind.TIMEOUT, 0)
    assert not policy.retries_failure(ErrorKind.RESET, 0)


def test_a_bad_retry_setting_is_one_line_naming_it():
    with pytest.raises(ConfigError, match="retry_on"):
        LoadSpec(url="http://127.0.0.1:1/", retry_on="timeout,sometimes")
    with pytest.raises(ConfigError, match="retries"):
        LoadSpec(url="ws://127.0.0.1:1/ws/echo", retries=1)
    done = bench("http://127.0.0.1:1/", "--retry-budget", "200%")
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert "retry" in done.stderr and "Traceback" not in done.stderr
    done = bench("http://127.0.0.1:1/", "--retry-on", "timeout,never")
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert "retry" in done.stderr and "Traceback" not in done.stderr


# The metastable demonstration: 4 back-end workers x 8 ms (500 answers/s at most; with 5 ms,
# 800 in theory, a quiet machine served the retries' 640 attempts/s and recovered) under 200
# requests/s; the client's pool is 64 connections, its timeout 100 ms
# and each request may take 500 ms in all. A listen backlog of 16 bounds the requests a 2 s
# stall leaves queued. Without a budget, every attempt after the stall times out in the queue
# the stall left, its retry comes at once, and attempts arrive faster (64 per 100 ms) than the
# back end serves them: the queue never drains. With a 10 % budget the load stays near 220/s.
STALL_SERVER = {"backend_workers": 4, "backend_service_ms": 8, "backlog": 16}


def stalled_goodput(lab_server, **retry_knobs) -> tuple[float, np.ndarray]:
    from lab.experiments.overload import run_with_stall

    server = lab_server(**STALL_SERVER)
    spec = LoadSpec(url=server.url + "/backend", mode="open", rate=200, connections=64,
                    duration_seconds=9.5, timeout_seconds=0.1, deadline_seconds=0.5, retries=3,
                    backoff="none", **retry_knobs)
    stalled = run_with_stall(server, spec, stall_at_seconds=2.0, stall_seconds=2.0)
    assert server.stats()["stalls"] == 1
    server.stop()
    return stalled.goodput_around_stall(before_seconds=1.5, after_seconds=5.0)


@pytest.mark.timing
def test_retries_without_a_budget_keep_the_server_down_after_a_stall_and_a_budget_cures_it(lab_server):
    level, after = stalled_goodput(lab_server)
    assert level > 150, level  # 200 requests/s, nearly all answered in time before the stall
    assert np.all(after < level / 2), (level, after)  # every second of five after it
    level, after = stalled_goodput(lab_server, retry_budget_percent=10)
    assert level > 150, level
    assert np.all(after[2:] >= level / 2), (level, after)  # back within two seconds


def test_a_saved_run_keeps_its_attempts_and_goodput(lab_server, store):
    from lab.records.experiment import record_from_result

    server = lab_server(backend_shed_percent=50, backend_service_ms=0)
    result = lab.run_load(LoadSpec(url=server.url + "/backend", mode="open", rate=200, connections=4,
                                   duration_seconds=0.5, retries=2, backoff="none",
                                   deadline_seconds=1))
    record = record_from_result(result, name="retried")
    store.save(record)
    loaded = store.load(record.id)
    assert np.array_equal(loaded.samples["attempt"], result.samples["attempt"])
    assert loaded.summary.goodput == result.summary.goodput
    assert loaded.summary.goodput is not None and loaded.summary.goodput.deadline_ms == 1000
    # show prints what bench printed: requests and attempts apart
    from lab.cli.records import describe

    goodput = loaded.summary.goodput
    shown = describe(loaded)
    assert (f"{goodput.good:,} of {goodput.requests:,} requests answered within their 1000 ms "
            "deadline") in shown
    assert (f"Attempts: {goodput.attempts:,} = {goodput.requests:,} requests + "
            f"{goodput.retries:,} retries") in shown


def test_samples_saved_before_attempts_existed_read_as_first_attempts(tmp_path):
    import hashlib

    from conftest import synthetic_samples

    from lab.measure.samples import SAMPLE_DTYPE, TLS_COLUMNS
    from lab.records.store import _read_samples, _samples_rows

    current = synthetic_samples(50)
    # the layout before this round: neither attempt nor the TLS columns
    before = np.dtype([(name, SAMPLE_DTYPE[name]) for name in SAMPLE_DTYPE.names
                       if name != "attempt" and name not in TLS_COLUMNS])
    old = np.zeros(current.shape, dtype=before)
    for name in old.dtype.names:
        old[name] = current[name]
    path = tmp_path / "samples.npy"
    np.save(path, old)
    assert _samples_rows(path) == 50
    read = _read_samples(path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert read.dtype == SAMPLE_DTYPE and np.array_equal(read, current)
    assert not np.any(read["attempt"])

"""The load generator on a Dask cluster (an embedded LocalCluster), against the lab server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import lab
from lab.engine.cluster import run_on_cluster
from lab.loadgen import LoadProgress, LoadRun, Run

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with lab.start_server(isolation="process") as server:
        yield server.url


def bench(*arguments: str, timeout: float = 120) -> tuple[int, dict[str, Any] | None, str]:
    done = subprocess.run([sys.executable, "-m", "lab", "bench", *arguments], capture_output=True,
                          text=True, timeout=timeout, check=False)
    document = json.loads(done.stdout) if done.stdout.strip().startswith("{") else None
    return done.returncode, document, done.stderr


def test_each_worker_runs_a_share_and_the_shares_add_up(server_url: str) -> None:
    code, document, _ = bench(server_url + "/fast", "--cluster", "local:2", "-c", "4", "-d", "1", "--json")
    assert code == 0 and document is not None
    workers = document["cluster"]["per_worker"]
    assert len(workers) == 2
    assert all(worker["requests"] > 0 and not worker["lost"] for worker in workers)
    assert sum(worker["requests"] for worker in workers) == document["requests"]
    assert document["errors"] == {}


def test_the_open_loop_rate_is_split_between_workers_not_multiplied(server_url: str) -> None:
    code, document, _ = bench(server_url + "/fast", "--cluster", "local:2", "--rate", "2000",
                              "-c", "4", "-d", "3", "--json")
    assert code == 0 and document is not None
    assert 6000 * 0.95 <= document["requests"] <= 6000 * 1.05


def test_progress_comes_from_every_worker_while_the_run_lasts(server_url: str) -> None:
    heard: list[LoadProgress] = []
    result = lab.run_load(lab.LoadSpec(url=server_url + "/fast", mode="open", rate=1000, connections=4,
                                       duration_seconds=3), cluster="local:2", on_progress=heard.append)
    running = [progress for progress in heard if progress.phase == "running"]
    assert len(running) >= 3, heard  # about every 0.5 s of a 3 s run
    counts = [progress.requests for progress in running]
    assert counts == sorted(counts) and counts[-1] > counts[0] > 0, counts
    assert counts[-1] <= result.requests  # a count so far, never more than the run's total
    assert any(500 <= progress.rps <= 1500 for progress in running[1:]), running


def test_a_live_cluster_run_sends_frames_while_it_lasts_and_they_count_every_request(server_url: str) -> None:
    import asyncio

    spec = lab.LoadSpec(url=server_url + "/fast", mode="open", rate=500, connections=4, duration_seconds=2)
    run = lab.start_load(spec, live=True, cluster="local:2")

    async def watch() -> tuple[list[Any], int, lab.LoadResult]:
        frames, while_running = [], 0
        while not run.done():
            fresh = run.live_frames()
            frames += fresh
            while_running += len(fresh) if run.progress().phase == "running" else 0
            await asyncio.sleep(0.1)
        result = await run.wait()
        frames += run.live_frames()
        return frames, while_running, result

    frames, while_running, result = asyncio.run(watch())
    assert while_running >= 5, while_running  # they came during the run, not only at its end
    assert [frame.index for frame in frames] == list(range(len(frames)))
    assert sum(frame.requests for frame in frames) == result.requests
    assert run.live_totals is not None and run.live_totals.requests == result.requests


def test_a_cluster_run_is_a_run_and_reports_progress_while_awaited_like_a_local_one(server_url: str) -> None:
    import asyncio

    spec = lab.LoadSpec(url=server_url + "/fast", mode="open", rate=500, connections=4, duration_seconds=1.5)
    run = lab.start_load(spec, cluster="local:2")
    assert isinstance(run, Run) and not isinstance(run, LoadRun)
    heard: list[LoadProgress] = []
    result = asyncio.run(run.wait(interval=0.1, on_progress=heard.append))
    assert any(progress.phase == "running" and progress.requests > 0 for progress in heard), heard
    assert heard[-1].phase == "done" and heard[-1].requests == result.requests
    with lab.start_load(spec.replace(duration_seconds=0.3)) as local:
        assert isinstance(local, Run) and local.frames_dropped == run.frames_dropped == 0


def test_a_cluster_run_stopped_by_its_owner_ends_early_with_what_it_measured(server_url: str) -> None:
    import asyncio

    spec = lab.LoadSpec(url=server_url + "/fast", mode="open", rate=500, connections=4, duration_seconds=30)
    run = lab.start_load(spec, cluster="local:2")

    async def stop_after_a_second() -> lab.LoadResult:
        while run.progress().phase != "running" or run.progress().requests < 200:
            await asyncio.sleep(0.1)
        began = time.monotonic()
        run.stop()
        result = await run.wait()
        assert time.monotonic() - began < 10  # not the 30 s planned
        return result

    result = asyncio.run(stop_after_a_second())
    assert result.stopped_early
    assert 200 <= result.requests < 30 * 500 / 2


def test_a_terminated_cluster_run_ends_at_once_and_says_its_workers_were_lost(server_url: str) -> None:
    """terminate() is for a run that does not end by itself: its tasks are cancelled, so their
    samples are lost -- and said so, one worker_lost per worker -- but the run still ends."""
    import asyncio

    spec = lab.LoadSpec(url=server_url + "/fast", mode="open", rate=500, connections=4, duration_seconds=30)
    run = lab.start_load(spec, cluster="local:2")
    assert run.longest_seconds() > 30 + spec.timeout_seconds

    async def terminate_once_running() -> None:
        while run.progress().phase != "running" or run.progress().requests < 200:
            await asyncio.sleep(0.1)
        run.terminate()

    asyncio.run(terminate_once_running())
    began = time.monotonic()
    result = run.result(timeout=20)
    assert time.monotonic() - began < 20
    assert result.stopped_early and result.errors == {"worker_lost": 2}
    assert result.outcome.cluster is not None
    assert all(worker["lost"] for worker in result.outcome.cluster["per_worker"])


CTRL_C_SCRIPT = """
import json, os, signal, sys
import lab

# Ctrl-C as a terminal delivers it: a suite started in the background by a non-interactive
# shell ignores SIGINT, and every process it starts inherits that (the run would go on).
signal.signal(signal.SIGINT, signal.default_int_handler)

def interrupt_once(progress):
    if progress.requests > 300 and not sent:
        sent.append(True)
        os.killpg(0, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group

sent = []
spec = lab.LoadSpec(url=sys.argv[1], mode="open", rate=500, connections=4, duration_seconds=30)
result = lab.run_load(spec, cluster="local:2", on_progress=interrupt_once, progress_interval=0.2)
print(json.dumps({"stopped_early": result.stopped_early, "requests": result.requests,
                  "errors": dict(result.errors)}))
"""


def test_ctrl_c_stops_a_cluster_run_and_keeps_what_the_workers_measured(server_url: str) -> None:
    # Ctrl-C reaches the embedded cluster's worker processes too (one process group); they
    # must not die with their samples but hear the stop like the rest of the run.
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CTRL_C_SCRIPT, server_url + "/fast"], capture_output=True,
                          text=True, timeout=90, start_new_session=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert time.monotonic() - began < 25  # not the 30 s planned
    assert report["stopped_early"] and report["requests"] > 300, report
    assert report["errors"] == {}, report  # no worker_lost


def test_a_killed_worker_gives_a_result_and_a_worker_lost_error(server_url: str) -> None:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        victim = sorted(client.scheduler_info()["workers"])[1]
        pid = client.run(os.getpid, workers=[victim])[victim]
        # Half-way through a 5 s run: the workers' set-up (connections, the common start) takes
        # up to a second or two on a busy machine, and the kill must land inside the load.
        killer = threading.Timer(2.5, os.kill, args=(pid, signal.SIGKILL))
        killer.start()
        started = time.monotonic()
        result = run_on_cluster(lab.LoadSpec(url=server_url + "/fast", connections=4,
                                             duration_seconds=5), client)
        killer.join()
    assert time.monotonic() - started < 30
    assert result.errors.get("worker_lost") == 1
    per_worker = result.outcome.cluster["per_worker"]  # type: ignore[index]
    assert [worker["lost"] for worker in per_worker] == [False, True]
    assert per_worker[0]["requests"] > 100  # what the surviving worker measured is kept


def test_a_scheduler_that_cannot_be_reached_is_one_line_and_exit_2(server_url: str) -> None:
    started = time.monotonic()
    code, _, stderr = bench(server_url + "/fast", "--cluster", "tcp://127.0.0.1:9", "-d", "1")
    assert code == 2
    assert "Traceback" not in stderr and "--cluster" in stderr
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("value", ["local:0", "local:x", "mars://here", "tcp://nohost"])
def test_a_bad_cluster_value_is_a_usage_error(server_url: str, value: str) -> None:
    code, _, stderr = bench(server_url + "/fast", "--cluster", value, "-d", "1")
    assert code == 2
    assert "--cluster" in stderr and "Traceback" not in stderr


def test_a_worker_whose_clock_estimate_puts_its_first_request_before_the_start_is_still_counted() -> None:
    """The clock offset is known to half a round trip: a worker's first request, moved onto the
    client's clock, can land just before the client's start time. It is part of the run."""
    import zlib

    import numpy as np

    from lab.engine.cluster import Segment, _merge
    from lab.measure.samples import empty

    start_ns, offset_ns = 10_000_000_000, -50_000  # the worker's clock read 50 µs late
    samples = empty(3)
    samples["intended_ns"] = samples["sent_ns"] = start_ns + np.array([0, 1_000_000, 2_000_000])
    samples["done_ns"] = samples["sent_ns"] + 100_000
    samples["status"] = 200
    outcome = {"start_ns": start_ns, "end_ns": start_ns + 3_000_000, "abandoned": 0,
               "samples": zlib.compress(samples.tobytes())}
    spec = lab.LoadSpec(url="http://127.0.0.1:1/fast", mode="open", rate=1000, connections=1,
                        duration_seconds=1)
    result = _merge(spec, [Segment(0, "tcp://worker", offset_ns)], [outcome], start_ns, "tcp://scheduler")
    assert result.requests == 3
    assert result.outcome.cluster is not None and result.outcome.cluster["per_worker"][0]["requests"] == 3


def test_a_worker_whose_target_went_away_makes_the_cluster_run_incomplete() -> None:
    import zlib

    import numpy as np

    from lab.engine.cluster import Segment, _merge
    from lab.measure.samples import empty
    from lab.measure.thresholds import Outcome

    start_ns = 10_000_000_000
    samples = empty(2)
    samples["intended_ns"] = samples["sent_ns"] = start_ns + np.array([0, 1_000_000])
    samples["done_ns"] = samples["sent_ns"] + 100_000
    samples["status"] = 200
    went = "connection refused: nothing is listening on 127.0.0.1:1 any more: the target went away"
    outcomes = [{"start_ns": start_ns, "end_ns": start_ns + 2_000_000, "abandoned": 0, "gave_up": went,
                 "samples": zlib.compress(samples.tobytes())} for _ in range(2)]
    spec = lab.LoadSpec(url="http://127.0.0.1:1/fast", mode="open", rate=1000, connections=2,
                        duration_seconds=1)
    result = _merge(spec, [Segment(0, "tcp://a", 0), Segment(1, "tcp://b", 0)], outcomes, start_ns, "s")
    assert result.problems == (went,)  # once, though both workers said it
    assert result.verdict()[0] is Outcome.INCOMPLETE

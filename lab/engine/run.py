"""A run of the generator, as everything that follows one sees it, wherever it runs.

:class:`Run` is the one interface that ``run_load``, the panel, the live view and notebooks
drive: where the run is (:meth:`~Run.progress`), what each interval looked like
(:meth:`~Run.live_frames`, :attr:`~Run.live_totals`), :meth:`~Run.stop`, :meth:`~Run.join`
and :meth:`~Run.result`, or ``await run.wait()`` from a notebook. Two kinds implement it:
:class:`lab.loadgen.LoadRun` (worker processes of this machine) and
:class:`lab.engine.cluster.ClusterRun` (a Dask cluster). What follows a run never asks which
kind it has, so a cluster run draws live in the panel exactly as a local one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from lab.engine.progress import LoadProgress
from lab.engine.result import LoadResult
from lab.engine.spec import LoadSpec
from lab.measure.frames import Frame

WAIT_INTERVAL_SECONDS = 0.25


@runtime_checkable
class Run(Protocol):
    """A load running in the background: poll it, follow it, stop it, wait for its result.

    Its methods never block longer than asked, and none needs a thread of the caller's.
    """

    spec: LoadSpec
    # The live frames' interval when the run was started with ``live=True``, else None.
    live_interval_s: float | None

    @property
    def start_ns(self) -> int | None:
        """When the load began (perf_counter_ns on this machine's clock, warm-up included);
        None before that."""
        ...

    @property
    def live_totals(self) -> Frame | None:
        """Every frame handed out so far, merged: the running counts and percentiles (None
        without ``live=True``)."""
        ...

    @property
    def frames_dropped(self) -> int:
        """Live frames lost on the way (counted, never hidden)."""
        ...

    def progress(self) -> LoadProgress:
        """Where the run is; once done, the figures of its summary."""
        ...

    def live_frames(self) -> list[Frame]:
        """The frames not handed out yet of the intervals every worker has closed, merged
        across workers by histogram; once the run is done, the last ones too."""
        ...

    def done(self) -> bool: ...

    def stop(self) -> None:
        """End the run early; what was measured so far is kept (``result().stopped_early``)."""
        ...

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the run to end (Ctrl-C still reaches the caller)."""
        ...

    def result(self, timeout: float | None = None) -> LoadResult:
        """Wait for the end of the run (raises TimeoutError after ``timeout`` seconds)."""
        ...

    def longest_seconds(self) -> float:
        """The most a healthy run can take: start-up, the plan, draining answers in flight."""
        ...

    def terminate(self) -> None:
        """Give up on a run that does not end by itself (what it measured may be lost)."""
        ...

    async def wait(self, *, interval: float = WAIT_INTERVAL_SECONDS,
                   on_progress: Callable[[LoadProgress], None] | None = None) -> LoadResult:
        """Await the result from a running event loop (a notebook's), reporting progress."""
        while not self.done():
            if on_progress is not None:
                on_progress(self.progress())
            await asyncio.sleep(interval)
        result = self.result()
        if on_progress is not None:
            on_progress(self.progress())
        return result

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.done():
            self.stop()
        self.result(timeout=self.spec.timeout_seconds + 30)


def follow_to_end(run: Run, on_progress: Callable[[LoadProgress], None] | None,
                  interval: float, *, stop_wait_seconds: float) -> LoadResult:
    """Block until ``run`` ends, reporting progress every ``interval`` seconds: what
    ``run_load`` does for every kind of run. Ctrl-C stops the run and keeps what it measured;
    a run that outlives :meth:`Run.longest_seconds` is stopped, and one that then does not end
    within ``stop_wait_seconds`` is terminated (TimeoutError)."""
    deadline = time.monotonic() + run.longest_seconds()
    stuck = False
    try:
        while not run.done():
            if time.monotonic() > deadline:
                run.stop()  # something is stuck: keep what was measured, if it comes
                stuck = True
                break
            run.join(interval)
            if on_progress is not None and not run.done():
                on_progress(run.progress())
    except KeyboardInterrupt:
        run.stop()
    try:
        result = run.result(timeout=stop_wait_seconds)
    except TimeoutError:
        run.terminate()
        raise
    if stuck:  # not the user's stop: the run failed to end, and is incomplete
        return result.given_up(f"the run did not end within {run.longest_seconds():g} s "
                               "and was stopped")
    return result

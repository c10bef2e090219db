"""The open loop's wake-ups: never before the instant asked for."""

from __future__ import annotations

import asyncio
from time import perf_counter_ns

import pytest
import uvloop

from lab.engine.timer import CoarseTimer, TimerfdTimer, precise_timer


async def _wake_ups(make_timer: type[TimerfdTimer] | type[CoarseTimer] | None) -> list[int]:
    loop = asyncio.get_running_loop()
    woken: asyncio.Queue[int] = asyncio.Queue()
    timer = (make_timer or precise_timer)(loop, lambda: woken.put_nowait(perf_counter_ns()))
    lateness = []
    try:
        for _ in range(20):
            target = perf_counter_ns() + 2_000_000
            timer.arm_at(target)
            lateness.append(await asyncio.wait_for(woken.get(), 5) - target)
    finally:
        timer.close()
    return lateness


@pytest.mark.parametrize("timer_class", [TimerfdTimer, None])
def test_the_timer_wakes_the_loop_at_the_instant_not_before(timer_class: type[TimerfdTimer] | None) -> None:
    lateness = uvloop.run(_wake_ups(timer_class))
    assert min(lateness) >= 0
    assert sorted(lateness)[len(lateness) // 2] < 50_000_000  # generous: a loaded machine


def test_the_fallback_timer_also_wakes_the_loop() -> None:
    lateness = uvloop.run(_wake_ups(CoarseTimer))
    assert len(lateness) == 20
    assert sorted(lateness)[len(lateness) // 2] < 50_000_000

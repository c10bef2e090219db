"""Waking an event loop at a given ``perf_counter_ns`` instant, to the microsecond.

libuv (and so uvloop) keeps time in milliseconds: ``call_later`` fires up to a millisecond
early or late. The open loop must send each request at its intended time, so on Linux it
arms a ``timerfd`` (nanosecond resolution, absolute CLOCK_MONOTONIC -- the clock behind
``perf_counter_ns``) and lets the loop watch it like a socket. Waking takes some tens of
microseconds, so the caller asks to be woken a little early and polls the last stretch.
Where timerfd is missing, :class:`CoarseTimer` wakes a millisecond early instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import Callable
from time import perf_counter_ns

from lab.units import NS_PER_S

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class TimerfdTimer:
    """Calls ``callback`` on ``loop`` at (just after) the instant given to :meth:`arm_at`."""

    early_ns = 50_000  # how early callers should aim: the usual wake-up latency

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = self._libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._spec = _Itimerspec()
        self._callback = callback
        self._loop = loop
        loop.add_reader(self._fd, self._fired)

    def arm_at(self, instant_ns: int) -> None:
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(max(instant_ns, 1), NS_PER_S)
        if self._libc.timerfd_settime(self._fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None):
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count; reading re-arms readiness
        except BlockingIOError:
            return
        self._callback()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)


class CoarseTimer:
    """The fallback: the loop's own millisecond timers."""

    early_ns = 1_500_000

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def arm_at(self, instant_ns: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        delay = max(instant_ns - perf_counter_ns(), 0) / NS_PER_S
        self._handle = self._loop.call_later(delay, self._callback)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def precise_timer(loop: asyncio.AbstractEventLoop,
                  callback: Callable[[], None]) -> TimerfdTimer | CoarseTimer:
    try:
        return TimerfdTimer(loop, callback)
    except (OSError, AttributeError):  # not Linux, or no timerfd in this libc
        return CoarseTimer(loop, callback)

"""Clocks for the simulated engine: model time, slept in (scaled) real time or advanced virtually.

The engine works only in *model* seconds (what a real GPU would take). `RealClock` maps model time
onto the wall clock through `time_scale`, so a 1 s prefill sleeps 10 ms at scale 0.01 while every
reported time stays 1 s. `VirtualClock` never sleeps: tests advance it step by step, so a scenario
with seconds of simulated prefill runs in milliseconds and deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    """What the engine needs from time: a model-time reading and ways to wait for one."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None: ...


class RealClock:
    """Model time = wall time since creation / time_scale.

    Sleeping targets absolute deadlines, so timer slack (asyncio sleeps are ~1 ms accurate) never
    accumulates over thousands of steps.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._scale = time_scale
        self._origin = time.monotonic()
        self._model_origin = 0.0

    @property
    def time_scale(self) -> float:
        return self._scale

    def rescale(self, time_scale: float) -> None:
        """Change speed without a jump in model time (e.g. to fast-forward a warm-up phase)."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._model_origin = self.now()
        self._origin = time.monotonic()
        self._scale = time_scale

    def now(self) -> float:
        return self._model_origin + (time.monotonic() - self._origin) / self._scale

    def _real_delay(self, deadline: float) -> float:
        return (deadline - self._model_origin) * self._scale + self._origin - time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = self._real_delay(deadline)
        if delay > 0:
            await asyncio.sleep(delay)

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        if deadline is None:
            await event.wait()
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, self._real_delay(deadline)))


class VirtualClock:
    """Model time that moves only when told to: by the engine's step loop or by a test."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    def advance_to(self, t: float) -> None:
        if t > self._t:
            self._t = t

    async def sleep_until(self, deadline: float) -> None:
        self.advance_to(deadline)
        await asyncio.sleep(0)

    async def wait(self, event: asyncio.Event, deadline: float | None) -> None:
        """Let other tasks run first; if nobody woke us, jump straight to the deadline."""
        await asyncio.sleep(0)
        if event.is_set():
            return
        if deadline is None:
            await event.wait()
        else:
            self.advance_to(deadline)

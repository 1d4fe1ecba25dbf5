"""`benchmark --demo`: the simulated engine on a free loopback port, in a thread of this process.

The engine gets its own thread and event loop so its step loop never waits behind the client's
callbacks (and vice versa); only the GIL is shared, which the engine's memoised, O(batch) steps
keep light. The benchmark itself then runs unchanged against the engine's URL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tmesh.bench.run import BenchmarkError
from tmesh.sim.profiles import PROFILES
from tmesh.sim.server import SimulatorHandle, start_simulator

# The first pass over the default workload's 61 cold 32k contexts takes the simulated H100 about
# a minute, so a 60 s demo ended before the first revisit: nothing it exists to show was on screen.
DEMO_DURATION_S = 90.0
START_TIMEOUT_S = 30.0


@contextmanager
def demo_engine(profile: str) -> Iterator[str]:
    """Yield the URL of a running simulated engine; stop it on exit."""
    if profile not in PROFILES:
        raise BenchmarkError(f"unknown --profile {profile!r}; choose from {', '.join(PROFILES)}")
    ready = threading.Event()
    box: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        stop = asyncio.Event()
        box["stop"] = stop
        try:
            handle: SimulatorHandle = await start_simulator(PROFILES[profile])
        except Exception as exc:  # reported to the caller's thread, which prints one line
            box["error"] = exc
            ready.set()
            return
        box["handle"] = handle
        ready.set()
        await stop.wait()
        await handle.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S) or "error" in box:
        raise BenchmarkError(f"the demo engine did not start: {box.get('error', 'timeout')}")
    handle = box["handle"]
    try:
        yield handle.url  # type: ignore[attr-defined]
    finally:
        loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
        thread.join(timeout=10)

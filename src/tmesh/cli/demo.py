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
from dataclasses import replace

from tmesh.bench.prepare import BenchmarkError
from tmesh.sim.config import EngineConfig
from tmesh.sim.profiles import PROFILES
from tmesh.sim.server import SimulatorHandle, start_simulator

# The first pass over the default workload's 61 cold 32k contexts takes the simulated H100 about
# a minute, so a 60 s demo ended before the first revisit: nothing it exists to show was on screen.
DEMO_DURATION_S = 90.0
START_TIMEOUT_S = 30.0
DEMO_SESSIONS_GPU_TOKENS = 16000
"""GPU KV capacity of the demo engine for sessions: the default sessions' conversations outgrow
it within a minute, so idle ones are evicted and the survival curve shows its knee in a demo."""


def demo_config(profile: str, gpu_kv_tokens: int | None = None) -> EngineConfig:
    """A profile, with its GPU KV capacity replaced when asked (its context length shrinks to
    fit, as vLLM refuses a max_model_len its KV cache cannot hold)."""
    if profile not in PROFILES:
        raise BenchmarkError(f"unknown --profile {profile!r}; choose from {', '.join(PROFILES)}")
    config = PROFILES[profile]
    if gpu_kv_tokens is None:
        return config
    try:
        return replace(
            config,
            gpu_kv_tokens=gpu_kv_tokens,
            max_model_len=min(config.max_model_len, gpu_kv_tokens),
        )
    except ValueError as exc:
        raise BenchmarkError(f"--gpu-kv-tokens {gpu_kv_tokens}: {exc}") from None


@contextmanager
def demo_engine(profile: str, gpu_kv_tokens: int | None = None) -> Iterator[str]:
    """Yield the URL of a running simulated engine; stop it on exit."""
    config = demo_config(profile, gpu_kv_tokens)
    ready = threading.Event()
    box: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        stop = asyncio.Event()
        box["stop"] = stop
        try:
            handle: SimulatorHandle = await start_simulator(config)
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

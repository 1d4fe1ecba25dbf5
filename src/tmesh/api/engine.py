"""The simulated engine on a free loopback port, in a thread of this process: `tmesh.simulate`,
and the engine `benchmark --demo` runs against.

The engine gets its own thread and event loop so its step loop never waits behind the client's
callbacks (and vice versa); only the GIL is shared, which the engine's memoised, O(batch) steps
keep light. The benchmark itself then runs unchanged against the engine's URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

from tmesh.bench.prepare import BenchmarkError
from tmesh.sim.config import EngineConfig
from tmesh.sim.profiles import DEFAULT_PROFILE, PROFILES
from tmesh.sim.server import SimulatorHandle, start_simulator

# The first pass over the default workload's 61 cold 32k contexts takes the simulated H100 about
# a minute, so a 60 s demo ended before the first revisit: nothing it exists to show was on screen.
DEMO_DURATION_S = 90.0
START_TIMEOUT_S = 30.0
DEMO_SESSIONS_GPU_TOKENS = 16000
"""GPU KV capacity of the demo engine for sessions: the default sessions' conversations outgrow
it within a minute, so idle ones are evicted and the survival curve shows its knee in a demo."""
KNOBS = tuple(f.name for f in dataclasses.fields(EngineConfig) if f.name != "name")
"""The engine's knobs a caller may set over a profile's values."""


def demo_knobs(profile: str, gpu_kv_tokens: int | None) -> dict[str, Any]:
    """The knobs of a demo engine with its GPU KV capacity replaced when asked: its context
    length shrinks to fit, as vLLM refuses a max_model_len its KV cache cannot hold."""
    if gpu_kv_tokens is None or profile not in PROFILES:
        return {}
    limit = min(PROFILES[profile].max_model_len, gpu_kv_tokens)
    return {"gpu_kv_tokens": gpu_kv_tokens, "max_model_len": limit}


def engine_config(profile: str, **knobs: Any) -> EngineConfig:
    """A built-in profile with some knobs replaced (`time_scale=0.01`, `gpu_kv_tokens=8000`)."""
    if profile not in PROFILES:
        raise BenchmarkError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise BenchmarkError(
            f"the simulated engine has no knob {unknown[0]!r}; its knobs: {', '.join(KNOBS)}"
        )
    try:
        return dataclasses.replace(PROFILES[profile], **knobs)
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"profile {profile}: {exc}") from None


class Simulation:
    """A simulated engine serving in a thread of its own; `url` is its `http://host:port`.

    A context manager, sync (`with`) or async (`async with`), whose value is the URL; the engine
    stops on leaving it. `start`/`stop` do the same by hand.
    """

    def __init__(
        self,
        config: EngineConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ) -> None:
        self.config = config
        self.host, self.port, self.api_key = host, port, api_key
        self.url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> str:
        """Start the engine and return its URL once it accepts connections."""
        if self.url is not None:
            return self.url
        ready = threading.Event()
        box: dict[str, Any] = {}
        loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                handle: SimulatorHandle = await start_simulator(
                    self.config, self.host, self.port, api_key=self.api_key
                )
            except Exception as exc:  # reported to the caller's thread, which says it in a line
                box["error"] = exc
                ready.set()
                return
            box["url"] = handle.url
            ready.set()
            await self._stop.wait()
            await handle.stop()

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        if not ready.wait(START_TIMEOUT_S) or "error" in box:
            thread.join(timeout=1)
            raise BenchmarkError(
                f"the simulated engine did not start: {box.get('error', 'timeout')}"
            )
        self._thread, self._loop = thread, loop
        self.url = str(box["url"])
        return self.url

    def stop(self) -> None:
        """Stop serving and wait for the engine's thread; idempotent."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        self._thread = None
        self.url = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> str:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


def simulate(
    profile: str = DEFAULT_PROFILE,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    **knobs: Any,
) -> Simulation:
    """The simulated inference engine, to benchmark without a GPU.

    `profile` is one of `gpu-only`, `cpu-offload` (the default) and `fast`; `knobs` replace any
    of its `EngineConfig` values (`time_scale=0.1` runs the model ten times faster,
    `gpu_kv_tokens=8000` shrinks its GPU cache). `port=0` picks a free port; `api_key` makes the
    engine demand that bearer key. Use it as a context manager, sync or async::

        with tmesh.simulate("gpu-only") as url:
            result = tmesh.benchmark(endpoint=url, duration=15)
    """
    return Simulation(engine_config(profile, **knobs), host, port, api_key)

"""Profiles, config validation, clocks and the idle engine."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace

import pytest

from tmesh.sim import latency
from tmesh.sim.clock import RealClock, VirtualClock
from tmesh.sim.config import EngineConfig
from tmesh.sim.engine import Engine
from tmesh.sim.profiles import PROFILES, describe_profiles


def test_gpt_oss_h100_profiles_size_the_benchmark_working_set() -> None:
    gpu, cpu = PROFILES["gpu-only"], PROFILES["cpu-offload"]
    working_set = 61 * (32000 + 20)
    assert 1_100_000 < gpu.gpu_kv_tokens < 1_200_000 < working_set
    assert gpu.num_cpu_blocks == 0
    assert cpu.num_cpu_blocks * cpu.block_size >= working_set
    assert gpu.kv_bytes_per_token == 49152 and gpu.model == "openai/gpt-oss-20b"
    est = latency.idle_ttfts(cpu, 32015)
    assert 0.7 < est.cold < 1.5
    assert est.cold > 5 * est.cpu_hit > 5 * est.gpu_hit


def test_fast_profile_keeps_the_cache_but_not_the_latency() -> None:
    fast = PROFILES["fast"]
    assert fast.num_gpu_blocks == PROFILES["gpu-only"].num_gpu_blocks
    assert latency.idle_ttfts(fast, 32015).cold < 0.01


def test_describe_profiles_lists_every_profile_with_its_ttfts() -> None:
    text = describe_profiles()
    for name in PROFILES:
        assert f"{name}:" in text
    assert "CPU hit" in text and "1,184,944 tokens" in text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_model_len", 10**7, "exceeds the GPU KV capacity"),
        ("time_scale", 0.0, "time_scale"),
        ("t_fixed_s", -1.0, "t_fixed_s"),
        ("cpu_offload_gb", -1.0, "cpu_offload_gb"),
        ("cpu_offload_gb", math.inf, "cpu_offload_gb must be a finite number"),
        ("t_fixed_s", math.inf, "t_fixed_s must be a finite number"),
        ("time_scale", math.nan, "time_scale must be a finite number"),
    ],
)
def test_invalid_overrides_fail_with_one_line(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        replace(EngineConfig(), **{field: value})
    assert "\n" not in str(err.value)


def test_virtual_clock_only_moves_forward() -> None:
    clock = VirtualClock(5.0)
    clock.advance_to(3.0)
    assert clock.now() == 5.0
    clock.advance_to(7.5)
    assert clock.now() == 7.5


async def test_real_clock_sleeps_scaled_model_time_and_rescales_without_a_jump() -> None:
    clock = RealClock(time_scale=0.001)
    start_wall, start_model = time.monotonic(), clock.now()
    await clock.sleep_until(start_model + 20.0)  # 20 s of model time = 20 ms of wall time
    assert clock.now() >= start_model + 20.0
    assert time.monotonic() - start_wall < 5.0
    before = clock.now()
    clock.rescale(1.0)
    assert before <= clock.now() < before + 1.0


async def test_idle_engine_waits_instead_of_spinning() -> None:
    engine = Engine(PROFILES["fast"], VirtualClock())
    calls = 0
    schedule = engine._schedule

    def counting(now: float) -> object:
        nonlocal calls
        calls += 1
        return schedule(now)

    engine._schedule = counting  # type: ignore[method-assign]
    await engine.start()
    for _ in range(50):
        await asyncio.sleep(0)
    assert calls == 1
    req = engine.submit(list(range(100)), 3)
    assert sum([n async for n in req.stream()]) == 3
    await engine.stop()

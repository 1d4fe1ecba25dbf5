"""The built-in profiles of the simulated engine, and what each implies for a long prompt.

`gpu-only` is gpt-oss-20b on one H100 with vLLM's prefix cache; `cpu-offload` adds a CPU KV tier,
the stack the benchmark exists to show paying off; `fast` keeps the cache geometry with near-zero
latency, so client-speed runs and tests are never limited by the engine.
"""

from __future__ import annotations

from dataclasses import replace

from tmesh.sim import latency
from tmesh.sim.config import EngineConfig


def _fast(base: EngineConfig) -> EngineConfig:
    """Near-zero latency with the same cache geometry: the engine never limits a client benchmark.

    A 50 us step floor keeps the idle-free loop from busy-spinning the event loop when many
    requests decode at once.
    """
    return replace(
        base,
        name="fast",
        t_fixed_s=50e-6,
        linear_s_per_token=0.0,
        attn_s_per_pair=0.0,
        weight_floor_s=0.0,
        kv_read_s_per_token=0.0,
        per_seq_s=0.0,
        api_overhead_s=0.0,
        tokenize_s_per_token=0.0,
        per_op_latency_s=0.0,
        jitter=0.0,
    )


_GPU_ONLY = EngineConfig(name="gpu-only", jitter=0.02)

DEFAULT_PROFILE = "cpu-offload"
"""The profile `simulate` and `benchmark --demo` use unless told: the stack the benchmark exists
to show paying off."""

PROFILES: dict[str, EngineConfig] = {
    "gpu-only": _GPU_ONLY,
    "cpu-offload": replace(_GPU_ONLY, name="cpu-offload", cpu_offload_gb=100.0),
    "fast": _fast(_GPU_ONLY),
}

_PROFILE_NOTES = {
    "gpu-only": "gpt-oss-20b on one H100, vLLM prefix cache only",
    "cpu-offload": "gpu-only plus a 100 GiB CPU KV tier (vLLM native offload)",
    "fast": "gpu-only cache geometry, near-zero latency (client-speed runs, tests)",
}


def describe_profiles(prompt_tokens: int = 32000) -> str:
    """Text for `--list-profiles`: capacities and the idle-engine TTFTs each profile implies."""
    lines = []
    for name, cfg in PROFILES.items():
        est = latency.idle_ttfts(cfg, prompt_tokens)
        cpu = f"{cfg.cpu_offload_gb:g} GiB ({cfg.num_cpu_blocks * cfg.block_size:,} tokens)"
        lines += [
            f"{name}: {_PROFILE_NOTES[name]}",
            f"  model {cfg.model}, max_model_len {cfg.max_model_len}, "
            f"KV {cfg.kv_bytes_per_token} B/token",
            f"  GPU KV {cfg.num_gpu_blocks * cfg.block_size:,} tokens "
            f"({cfg.num_gpu_blocks:,} blocks of {cfg.block_size}), CPU tier "
            + (cpu if cfg.num_cpu_blocks else "off"),
            f"  idle TTFT for {prompt_tokens} tokens: cold {est.cold:.3f} s, GPU hit "
            f"{est.gpu_hit:.3f} s"
            + (f", CPU hit {est.cpu_hit:.3f} s" if cfg.num_cpu_blocks else ""),
            f"  decode step: {latency.decode_step_seconds(cfg, 1, 1000) * 1e3:.1f} ms "
            f"(1 x 1k), {latency.decode_step_seconds(cfg, 20, 32000) * 1e3:.1f} ms (20 x 32k)",
        ]
    return "\n".join(lines)

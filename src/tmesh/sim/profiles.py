"""The built-in profiles of the simulated engine, and what each implies for a long prompt.

`gpu-only` is gpt-oss-20b on one H100 with vLLM's prefix cache; `cpu-offload` adds a CPU KV tier,
the stack the benchmark exists to show paying off; `fast` keeps the cache geometry with near-zero
latency, so client-speed runs and tests are never limited by the engine. `small` and
`small-offload` shrink the caches (not the speed) so that a working-set sweep of short prompts
crosses both tiers in a minute or two.
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

SMALL_GPU_TOKENS = 32768
"""The small profiles' GPU KV capacity: 32 prompts of 1,024 tokens."""
SMALL_PROMPT_TOKENS = 1024
"""The prompt length the small profiles are sized for."""


def _small(base: EngineConfig, name: str, cpu_offload_gb: float) -> EngineConfig:
    """The H100's step times over a GPU cache of 32k tokens, at half speed in real time: a sweep
    from half the GPU cache to eight times it sends about 1,500 prompts of 1k tokens, and its
    knees sit where the capacities say."""
    return replace(
        base,
        name=name,
        gpu_kv_tokens=SMALL_GPU_TOKENS,
        max_model_len=SMALL_GPU_TOKENS // 2,
        cpu_offload_gb=cpu_offload_gb,
        time_scale=0.5,
    )


DEFAULT_PROFILE = "cpu-offload"
"""The profile `simulate` and `benchmark --demo` use unless told: the stack the benchmark exists
to show paying off."""

PROFILES: dict[str, EngineConfig] = {
    "gpu-only": _GPU_ONLY,
    "cpu-offload": replace(_GPU_ONLY, name="cpu-offload", cpu_offload_gb=100.0),
    "fast": _fast(_GPU_ONLY),
    "small": _small(_GPU_ONLY, "small", 0.0),
    # 9 GiB of 16-token blocks at 49,152 bytes per token: 196,608 tokens, 6x the GPU cache.
    "small-offload": _small(_GPU_ONLY, "small-offload", 9.0),
}

_PROFILE_NOTES = {
    "gpu-only": "gpt-oss-20b on one H100, vLLM prefix cache only",
    "cpu-offload": "gpu-only plus a 100 GiB CPU KV tier (vLLM native offload)",
    "fast": "gpu-only cache geometry, near-zero latency (client-speed runs, tests)",
    "small": "gpu-only with a 32k-token GPU cache at half speed (sweeps of 1k-token prompts)",
    "small-offload": "small plus a CPU tier of 6x its GPU cache (sweeps of 1k-token prompts)",
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

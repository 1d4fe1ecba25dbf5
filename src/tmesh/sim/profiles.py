"""Engine configuration and the built-in hardware/model profiles of the simulated engine.

Every number the engine uses lives in `EngineConfig`, so a user can paste figures measured on a real
server (vLLM prints "GPU KV cache size: N tokens" at start-up) field by field with
`dataclasses.replace`; the CLI maps one flag onto each field.

The calibration of `gpt-oss-20b` on one H100 SXM is derived below from public constants
(reference notes, sections 6.2-6.5 and 7.4). All of it is an estimate with roughly +-30 %
uncertainty; what matters for the benchmark is the ratio between a cold 32k prefill, a GPU hit and
a CPU-tier load, and the GPU capacity relative to the 61-context working set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from tmesh.sim import latency

GIB = 2**30

# H100 SXM (BLIS hardware_config.json): dense BF16 peak and HBM bandwidth.
H100_PEAK_FLOPS = 989.5e12
H100_HBM_BYTES_PER_S = 3.35e12

# gpt-oss-20b architecture (config.json): 24 layers alternating full attention and a 128-token
# sliding window, 64 query heads, 8 KV heads, head_dim 64, 32 experts with top-4 routing,
# 3.6e9 active parameters per token, ~13 GB of MXFP4 weights.
GPT_OSS_LAYERS = 24
GPT_OSS_FULL_ATTENTION_LAYERS = 12
GPT_OSS_Q_HEADS = 64
GPT_OSS_KV_HEADS = 8
GPT_OSS_HEAD_DIM = 64
GPT_OSS_ACTIVE_PARAMS = 3.6e9
GPT_OSS_WEIGHT_BYTES = 13e9
GPT_OSS_EXPERTS = 32
GPT_OSS_TOP_K = 4
GPT_OSS_KV_BYTES_PER_TOKEN = 2 * GPT_OSS_LAYERS * GPT_OSS_KV_HEADS * GPT_OSS_HEAD_DIM * 2
GPT_OSS_MAX_MODEL_LEN = 131072
GPT_OSS_VOCAB = 201088

# Efficiency factors: BLIS's trained corrections (weight read x1.36, KV read x1.95) and MFUs.
# MoE grouped GEMMs run below dense efficiency, hence 0.35 rather than BLIS's dense 0.45.
MFU_LINEAR = 0.35
MFU_ATTENTION = 0.35
WEIGHT_READ_OVERHEAD = 1.36
KV_READ_OVERHEAD = 1.95
REFERENCE_BATCH = 20


def h100_kv_capacity_tokens(weight_bytes: float, kv_bytes_per_token: int, block_size: int) -> int:
    """GPU KV tokens as vLLM would size them on an 80 GiB H100 (llm-d / BLIS capacity planner).

    `0.9 * 80 GiB` (gpu_memory_utilization) minus the weights minus ~5.65 GiB of activations,
    CUDA graphs and allocator slack, divided by KV bytes per token, rounded down to whole blocks.
    gpt-oss-20b: 72 GiB - 13e9 B - 5.65 GiB = 54.24 GiB = 5.824e10 B; / 49152 B = 1,184,953 tokens
    -> 74,059 blocks = 1,184,944 tokens, about 37 contexts of 32k (the benchmark cycles 61).
    """
    free_bytes = 0.9 * 80 * GIB - weight_bytes - 5.65 * GIB
    tokens = int(free_bytes // kv_bytes_per_token)
    return tokens // block_size * block_size


# Derivation of the gpt-oss-20b / H100 coefficients (reference 7.4 applied to this model):
# - linear prefill: 2 * 3.6e9 FLOP/token / (989.5e12 * 0.35) = 20.8 us/token;
# - attention: 4 * 12 full layers * 64 heads * 64 dims = 196,608 FLOP per (new, context) token
#   pair / (989.5e12 * 0.35) = 0.568 ns/pair (sliding-window layers see <= 128 tokens: ignored);
#   so a cold 32k prefill on an idle engine costs 32k * 20.8 us + 5.1e8 pairs * 0.568 ns + 4 steps
#   of fixed cost ~= 0.96 s;
# - decode weight-read floor: at the benchmark's batch of 20 sequences, top-4-of-32 routing touches
#   1 - (28/32)^20 = 93 % of the experts, so a step reads ~93 % of 13 GB:
#   1.36 * 12.1e9 B / 3.35e12 B/s = 4.9 ms;
# - KV read per context token: only the 12 full-attention layers read the whole context,
#   12 * 8 heads * 64 * 2 (K,V) * 2 B = 24,576 B * 1.95 / 3.35e12 B/s = 14.3 ns/token, so 20
#   sequences at 32k add 9.2 ms per step;
# - fixed step cost 126 us + 32 us * 24 layers = 0.89 ms; per sequence 4.4 us (BLIS);
# - CPU tier (when on): 32 GB/s H2D and D2H, 0.5 ms per transfer, so a 32k context (1.57 GB)
#   loads in ~50 ms, ~19x faster than recomputing it.
_EXPERT_COVERAGE = 1 - (1 - GPT_OSS_TOP_K / GPT_OSS_EXPERTS) ** REFERENCE_BATCH
_FULL_LAYER_KV_BYTES = GPT_OSS_FULL_ATTENTION_LAYERS * GPT_OSS_KV_HEADS * GPT_OSS_HEAD_DIM * 4
_ATTENTION_FLOPS_PER_PAIR = 4 * GPT_OSS_FULL_ATTENTION_LAYERS * GPT_OSS_Q_HEADS * GPT_OSS_HEAD_DIM
H100_T_FIXED_S = 126e-6 + 32e-6 * GPT_OSS_LAYERS
H100_LINEAR_S_PER_TOKEN = 2 * GPT_OSS_ACTIVE_PARAMS / (H100_PEAK_FLOPS * MFU_LINEAR)
H100_ATTN_S_PER_PAIR = _ATTENTION_FLOPS_PER_PAIR / (H100_PEAK_FLOPS * MFU_ATTENTION)
H100_WEIGHT_FLOOR_S = (
    WEIGHT_READ_OVERHEAD * GPT_OSS_WEIGHT_BYTES * _EXPERT_COVERAGE / H100_HBM_BYTES_PER_S
)
H100_KV_READ_S_PER_TOKEN = _FULL_LAYER_KV_BYTES * KV_READ_OVERHEAD / H100_HBM_BYTES_PER_S
GPT_OSS_H100_KV_TOKENS = h100_kv_capacity_tokens(
    GPT_OSS_WEIGHT_BYTES, GPT_OSS_KV_BYTES_PER_TOKEN, block_size=16
)


@dataclass(frozen=True)
class EngineConfig:
    """Every knob of the simulated engine; times in seconds of model time, sizes in tokens/bytes.

    The defaults are gpt-oss-20b on one H100 SXM with vLLM's H100 API-server scheduler defaults
    (8192 batched tokens, 1024 sequences, 16-token blocks) and no CPU tier.

    `cpu_offload_gb` is in GiB like vLLM's `--kv-offloading-size` (0 disables the CPU tier);
    link speeds are in GB/s (1e9 bytes). `time_scale` multiplies every modelled duration when the
    engine sleeps in real time (0.01 runs 100x faster) while metrics and reported times stay in
    model time. `jitter` is the sigma of a seeded log-normal factor on each step time.
    """

    name: str = "custom"
    model: str = "openai/gpt-oss-20b"
    max_model_len: int = GPT_OSS_MAX_MODEL_LEN
    kv_bytes_per_token: int = GPT_OSS_KV_BYTES_PER_TOKEN
    gpu_kv_tokens: int = GPT_OSS_H100_KV_TOKENS
    block_size: int = 16
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 1024
    vocab_size: int = GPT_OSS_VOCAB
    t_fixed_s: float = H100_T_FIXED_S
    linear_s_per_token: float = H100_LINEAR_S_PER_TOKEN
    attn_s_per_pair: float = H100_ATTN_S_PER_PAIR
    weight_floor_s: float = H100_WEIGHT_FLOOR_S
    kv_read_s_per_token: float = H100_KV_READ_S_PER_TOKEN
    per_seq_s: float = 4.4e-6
    api_overhead_s: float = 0.010
    tokenize_s_per_token: float = 0.5e-6
    cpu_offload_gb: float = 0.0
    cpu_load_gbps: float = 32.0
    cpu_store_gbps: float = 32.0
    per_op_latency_s: float = 0.0005
    time_scale: float = 1.0
    seed: int = 0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        problems = _config_problems(self)
        if problems:
            raise ValueError(f"invalid engine config: {problems[0]}")

    @property
    def num_gpu_blocks(self) -> int:
        return self.gpu_kv_tokens // self.block_size

    @property
    def block_bytes(self) -> int:
        return self.block_size * self.kv_bytes_per_token

    @property
    def num_cpu_blocks(self) -> int:
        """CPU-tier capacity: GiB * 2^30 / (block_size * KV bytes per token), as reference 7.6."""
        return int(self.cpu_offload_gb * GIB // self.block_bytes)


def _config_problems(cfg: EngineConfig) -> list[str]:
    """Reasons a config cannot run, first one reported; vLLM refuses to start on the same ones.

    Infinite or NaN figures (`--cpu-offload-gb inf`) are refused first: they pass every range
    check below and then fail as a traceback when sizing the CPU tier, or make a step never end.
    """
    floats = [f.name for f in fields(cfg) if isinstance(getattr(cfg, f.name), float)]
    checks = [
        (math.isfinite(getattr(cfg, name)), f"{name} must be a finite number") for name in floats
    ]
    checks += [
        (cfg.block_size > 0, "block_size must be positive"),
        (cfg.gpu_kv_tokens >= cfg.block_size, "gpu_kv_tokens must hold at least one block"),
        (
            cfg.max_model_len <= cfg.num_gpu_blocks * cfg.block_size,
            f"max_model_len {cfg.max_model_len} exceeds the GPU KV capacity of "
            f"{cfg.num_gpu_blocks * cfg.block_size} tokens",
        ),
        (cfg.max_num_batched_tokens > 0, "max_num_batched_tokens must be positive"),
        (cfg.max_num_seqs > 0, "max_num_seqs must be positive"),
        (cfg.time_scale > 0, "time_scale must be positive"),
        (cfg.cpu_offload_gb >= 0, "cpu_offload_gb must be >= 0"),
        (cfg.cpu_load_gbps > 0 and cfg.cpu_store_gbps > 0, "CPU link speeds must be positive"),
        (cfg.jitter >= 0, "jitter must be >= 0"),
        (cfg.vocab_size > 0, "vocab_size must be positive"),
    ]
    timings = [f for f in fields(cfg) if f.name.endswith(("_s", "_s_per_token", "_s_per_pair"))]
    checks += [(getattr(cfg, f.name) >= 0, f"{f.name} must be >= 0") for f in timings]
    return [message for ok, message in checks if not ok]


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

"""Every knob of the simulated engine, in one record, and the checks that make it runnable.

Every number the engine uses lives in `EngineConfig`, so a user can paste figures measured on a real
server (vLLM prints "GPU KV cache size: N tokens" at start-up) field by field with
`dataclasses.replace`; the `simulate` command maps one flag onto each field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from tmesh.sim.calibration import (
    GIB,
    GPT_OSS_H100_KV_TOKENS,
    GPT_OSS_KV_BYTES_PER_TOKEN,
    GPT_OSS_MAX_MODEL_LEN,
    GPT_OSS_VOCAB,
    H100_ATTN_S_PER_PAIR,
    H100_KV_READ_S_PER_TOKEN,
    H100_LINEAR_S_PER_TOKEN,
    H100_T_FIXED_S,
    H100_WEIGHT_FLOOR_S,
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
        """CPU-tier capacity: GiB * 2^30 / (block_size * KV bytes per token), as vLLM sizes it."""
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

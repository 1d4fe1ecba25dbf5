"""gpt-oss-20b on one H100 SXM: the figures the simulated engine's defaults are derived from.

Derived from public constants: the H100's peak BF16 FLOPs and HBM bandwidth, gpt-oss-20b's
architecture (its config.json), and the efficiency corrections of the BLIS inference simulator.
All of it is an estimate with roughly +-30 % uncertainty; what matters for the benchmark is the
ratio between a cold 32k prefill, a GPU hit and a CPU-tier load, and the GPU capacity relative to
the 61-context working set.
"""

from __future__ import annotations

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


# Derivation of the gpt-oss-20b / H100 coefficients (the step-time model of `sim.latency`):
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

"""KV-cache bytes per token of a model: what sizes the workload to overflow the offload buffer.

Stored as geometry (layers, KV heads, head size, element size; or MLA latent sizes), not as bare
results, so each number can be checked against the model's `config.json` and the formula is the
one also applied to a user's own `--model-config`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

# FP8 checkpoints count as 2 bytes: FP8 *weights* run with bf16 activations and a bf16 KV cache;
# an fp8 cache is a server flag (--kv-cache-dtype), not something a config.json implies.
DTYPE_BYTES = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "bfloat16": 2,
    "bf16": 2,
    "float8_e4m3fn": 2,
    "float8_e5m2": 2,
    "fp8": 2,
}
DEFAULT_DTYPE_BYTES = 2


class ModelConfigError(ValueError):
    """A `config.json` that cannot give KV geometry; the message is one line naming the file."""


@dataclass(frozen=True)
class KVGeometry:
    """One token's KV cache across all layers.

    Standard attention stores a key and a value per KV head per layer; MLA (DeepSeek) stores one
    compressed latent plus the decoupled RoPE key per layer, with no K/V factor of two.
    """

    layers: int
    kv_heads: int = 0
    head_dim: int = 0
    dtype_bytes: int = DEFAULT_DTYPE_BYTES
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def bytes_per_token(self) -> int:
        if self.is_mla:
            return (self.kv_lora_rank + self.qk_rope_head_dim) * self.layers * self.dtype_bytes
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes


@dataclass(frozen=True)
class KnownModel:
    """A built-in table row: a display name, a name pattern, and the geometry from its config."""

    name: str
    pattern: re.Pattern[str]
    geometry: KVGeometry


def _gqa(name: str, pattern: str, layers: int, kv_heads: int, head_dim: int) -> KnownModel:
    return KnownModel(name, re.compile(pattern), KVGeometry(layers, kv_heads, head_dim))


# Geometry from each model's published config.json, bf16 KV cache (what servers use unless told
# --kv-cache-dtype fp8). Patterns match the normalised name: lower case, organisation removed.
KNOWN_MODELS: tuple[KnownModel, ...] = (
    _gqa("gpt-oss-20b", r"^gpt-oss-20b", 24, 8, 64),
    _gqa("gpt-oss-120b", r"^gpt-oss-120b", 36, 8, 64),
    _gqa("Qwen3-Coder-30B-A3B", r"^qwen3-coder-30b-a3b", 48, 4, 128),
    _gqa("Qwen3-Coder-480B-A35B", r"^qwen3-coder-480b", 62, 8, 128),
    _gqa("Qwen3-30B-A3B", r"^qwen3-30b-a3b", 48, 4, 128),
    _gqa("Qwen3-235B-A22B", r"^qwen3-235b-a22b", 94, 4, 128),
    _gqa("Qwen3-0.6B", r"^qwen3-0\.6b", 28, 8, 128),
    _gqa("Qwen3-1.7B", r"^qwen3-1\.7b", 28, 8, 128),
    _gqa("Qwen3-4B", r"^qwen3-4b", 36, 8, 128),
    _gqa("Qwen3-8B", r"^qwen3-8b", 36, 8, 128),
    _gqa("Qwen3-14B", r"^qwen3-14b", 40, 8, 128),
    _gqa("Qwen3-32B", r"^qwen3-32b", 64, 8, 128),
    _gqa("Llama-3.x-8B", r"^(meta-)?llama-?3(\.\d)?-8b", 32, 8, 128),
    _gqa("Llama-3.x-70B", r"^(meta-)?llama-?3(\.\d)?-70b", 80, 8, 128),
    _gqa("Llama-3.2-1B", r"^(meta-)?llama-?3\.2-1b", 16, 8, 64),
    _gqa("Llama-3.2-3B", r"^(meta-)?llama-?3\.2-3b", 28, 8, 128),
    _gqa("Mistral-7B", r"^mistral-7b", 32, 8, 128),
    KnownModel(
        "DeepSeek-V3/R1",
        re.compile(r"^deepseek-(v3|r1)(?!-distill)"),
        KVGeometry(61, kv_lora_rank=512, qk_rope_head_dim=64),
    ),
)


def normalize_name(name: str) -> str:
    """Served names come as `org/Model`, local paths, or `model:tag`; compare their last part."""
    base = name.strip().rstrip("/").rsplit("/", 1)[-1].lower()
    return re.sub(r"[\s_:]+", "-", base)


def find_model(name: str) -> KnownModel | None:
    normalized = normalize_name(name)
    for known in KNOWN_MODELS:
        if known.pattern.search(normalized):
            return known
    return None


def kv_bytes_per_token(name: str) -> int | None:
    """Bytes per token from the built-in table, or None for a model it does not know.

    Quantised checkpoints (`-FP8`, `-AWQ`, …) match their base model on purpose: weight
    quantisation does not change the KV cache, which stays bf16 unless the server is started with
    an fp8 KV cache (then pass --kv-bytes-per-token).
    """
    known = find_model(name)
    return None if known is None else known.geometry.bytes_per_token


def kv_bytes_from_config(path: str | Path) -> int:
    """Bytes per token from a Hugging Face `config.json` (or a folder holding one)."""
    return geometry_from_config(path).bytes_per_token


def geometry_from_config(path: str | Path) -> KVGeometry:
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / "config.json"
    try:
        config = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise ModelConfigError(f"--model-config {file}: cannot read it ({exc.strerror})") from exc
    except orjson.JSONDecodeError as exc:
        raise ModelConfigError(f"--model-config {file}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelConfigError(f"--model-config {file}: expected a JSON object")
    return geometry_from_dict(config, str(file))


def geometry_from_dict(config: dict[str, Any], where: str = "config") -> KVGeometry:
    """KV geometry of a config dict; multimodal configs nest the language model in `text_config`."""
    text = config.get("text_config")
    fields = {**config, **text} if isinstance(text, dict) else config
    layers = _positive(fields, "num_hidden_layers", where)
    dtype_bytes = _dtype_bytes(fields, where)
    if fields.get("kv_lora_rank"):
        return KVGeometry(
            layers,
            dtype_bytes=dtype_bytes,
            kv_lora_rank=_positive(fields, "kv_lora_rank", where),
            qk_rope_head_dim=_positive(fields, "qk_rope_head_dim", where),
        )
    heads = _positive(fields, "num_attention_heads", where)
    kv_heads = heads
    if _has(fields, "num_key_value_heads"):
        kv_heads = _positive(fields, "num_key_value_heads", where)
    if _has(fields, "head_dim"):
        head_dim = _positive(fields, "head_dim", where)
    else:
        hidden = _positive(fields, "hidden_size", where)
        if hidden % heads:
            raise ModelConfigError(
                f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            )
        head_dim = hidden // heads
    return KVGeometry(layers, kv_heads, head_dim, dtype_bytes)


def _has(fields: dict[str, Any], key: str) -> bool:
    return fields.get(key) is not None


def _positive(fields: dict[str, Any], key: str, where: str) -> int:
    value = fields.get(key)
    if value is None:
        raise ModelConfigError(f"{where}: no {key!r}, so the KV size per token is unknown")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelConfigError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    return value


def _dtype_bytes(fields: dict[str, Any], where: str) -> int:
    """Element size of the KV cache: the model's dtype (bf16 when the config does not say)."""
    name = fields.get("torch_dtype") or fields.get("dtype")
    if name is None:
        return DEFAULT_DTYPE_BYTES
    key = str(name).lower().removeprefix("torch.")
    if key not in DTYPE_BYTES:
        raise ModelConfigError(f"{where}: unknown dtype {name!r}")
    return DTYPE_BYTES[key]

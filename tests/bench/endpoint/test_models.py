"""KV bytes per token: the built-in table, name matching, and config.json parsing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tmesh.bench.endpoint.models import (
    KNOWN_MODELS,
    KVGeometry,
    ModelConfigError,
    find_model,
    kv_bytes_from_config,
    kv_bytes_per_token,
    normalize_name,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("openai/gpt-oss-20b", 49152),
        ("gpt-oss-20b", 49152),
        ("GPT-OSS-20B", 49152),
        ("openai/gpt-oss-120b", 73728),
        ("Qwen/Qwen3-30B-A3B", 98304),
        ("Qwen/Qwen3-30B-A3B-Instruct-2507", 98304),
        ("Qwen/Qwen3-30B-A3B-Instruct-2507-FP8", 98304),
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", 98304),
        ("Qwen/Qwen3-Coder-480B-A35B-Instruct", 253952),
        ("Qwen/Qwen3-8B", 147456),
        ("Qwen3-14B", 163840),
        ("Qwen/Qwen3-32B", 262144),
        ("meta-llama/Llama-3.1-8B-Instruct", 131072),
        ("meta-llama/Meta-Llama-3-8B-Instruct", 131072),
        ("RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8", 131072),
        ("llama3.1:8b", 131072),
        ("meta-llama/Llama-3.1-70B-Instruct", 327680),
        ("meta-llama/Llama-3.3-70B-Instruct", 327680),
        ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", 327680),
        ("meta-llama/Llama-3.2-1B-Instruct", 32768),
        ("mistralai/Mistral-7B-Instruct-v0.3", 131072),
        ("deepseek-ai/DeepSeek-V3", 70272),
        ("deepseek-ai/DeepSeek-R1-0528", 70272),
        ("/models/gpt-oss-20b/", 49152),
    ],
)
def test_table_by_name(name: str, expected: int) -> None:
    assert kv_bytes_per_token(name) == expected


@pytest.mark.parametrize(
    "name", ["tiny-llama", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "Qwen/Qwen3-80B", ""]
)
def test_unknown_names(name: str) -> None:
    assert kv_bytes_per_token(name) is None


def test_design_numbers_follow_from_geometry() -> None:
    """DESIGN's worked examples: 2 x layers x kv_heads x head_dim x 2 bytes, and DeepSeek's MLA."""
    assert KVGeometry(24, 8, 64).bytes_per_token == 2 * 24 * 8 * 64 * 2 == 49152
    assert KVGeometry(36, 8, 64).bytes_per_token == 73728
    mla = KVGeometry(61, kv_lora_rank=512, qk_rope_head_dim=64)
    assert mla.bytes_per_token == (512 + 64) * 61 * 2 == 70272


def test_qwen3_235b_uses_its_config_geometry() -> None:
    """94 layers x 4 KV heads x 128 x K/V x bf16 = 192512; DESIGN's 96256 is half of that (as if
    only K, or an fp8 cache, were stored), so the table follows the config, not the DESIGN line."""
    known = find_model("Qwen/Qwen3-235B-A22B-Instruct-2507")
    assert known is not None
    assert known.geometry == KVGeometry(94, 4, 128)
    assert known.geometry.bytes_per_token == 192512


def test_every_row_is_reachable_by_its_display_name() -> None:
    for known in KNOWN_MODELS:
        first = known.name.split("/")[0].replace(".x", ".1")
        assert find_model(first) is known, known.name


def test_normalize_name() -> None:
    assert normalize_name("  Org/Some_Model:Tag ") == "some-model-tag"


def _write(tmp_path: Path, config: object, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(config))
    return path


GPT_OSS_20B = {
    "architectures": ["GptOssForCausalLM"],
    "head_dim": 64,
    "hidden_size": 2880,
    "num_attention_heads": 64,
    "num_hidden_layers": 24,
    "num_key_value_heads": 8,
    "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "mxfp4"},
}
LLAMA_31_8B = {
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "torch_dtype": "bfloat16",
}
DEEPSEEK_V3 = {
    "hidden_size": 7168,
    "num_attention_heads": 128,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "kv_lora_rank": 512,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
    "torch_dtype": "bfloat16",
}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (GPT_OSS_20B, 49152),
        (LLAMA_31_8B, 131072),
        (DEEPSEEK_V3, 70272),
        ({**LLAMA_31_8B, "torch_dtype": None, "dtype": "float32"}, 262144),
        ({**LLAMA_31_8B, "torch_dtype": "float16"}, 131072),
        ({**LLAMA_31_8B, "torch_dtype": "float8_e4m3fn"}, 131072),
        ({k: v for k, v in LLAMA_31_8B.items() if k != "torch_dtype"}, 131072),
        ({k: v for k, v in LLAMA_31_8B.items() if k != "num_key_value_heads"}, 524288),
        (
            {"architectures": ["Gemma3ForConditionalGeneration"], "torch_dtype": "bfloat16",
             "text_config": {"num_hidden_layers": 34, "num_attention_heads": 8,
                             "num_key_value_heads": 4, "head_dim": 256},
             "vision_config": {"num_hidden_layers": 27}},
            2 * 34 * 4 * 256 * 2,
        ),
    ],
)  # fmt: skip
def test_config_json(tmp_path: Path, config: dict, expected: int) -> None:
    assert kv_bytes_from_config(_write(tmp_path, config)) == expected


def test_config_folder(tmp_path: Path) -> None:
    _write(tmp_path, GPT_OSS_20B)
    assert kv_bytes_from_config(tmp_path) == 49152


def test_tiny_llama_config_as_written_by_transformers(tmp_path: Path) -> None:
    config = {
        "dtype": "bfloat16",
        "head_dim": 64,
        "hidden_size": 256,
        "num_attention_heads": 4,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
    }
    assert kv_bytes_from_config(_write(tmp_path, config)) == 2 * 4 * 2 * 64 * 2


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"num_attention_heads": 8}', "no 'num_hidden_layers'"),
        (b'{"num_hidden_layers": 4}', "no 'num_attention_heads'"),
        (b'{"num_hidden_layers": 4, "num_attention_heads": 8}', "no 'hidden_size'"),
        (b'{"num_hidden_layers": -4, "num_attention_heads": 8}', "must be a positive integer"),
        (b'{"num_hidden_layers": 4.5}', "must be a positive integer"),
        (
            b'{"num_hidden_layers": 4, "num_attention_heads": 3, "hidden_size": 100}',
            "not a multiple",
        ),
        (
            b'{"num_hidden_layers": 4, "num_attention_heads": 8, "head_dim": 64, '
            b'"torch_dtype": "int3"}',
            "unknown dtype",
        ),
        (b'{"num_hidden_layers": 61, "kv_lora_rank": 512}', "no 'qk_rope_head_dim'"),
    ],
)
def test_config_errors(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(ModelConfigError) as info:
        kv_bytes_from_config(path)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError) as info:
        kv_bytes_from_config(tmp_path / "absent.json")
    assert "cannot read" in str(info.value)
    assert "absent.json" in str(info.value)

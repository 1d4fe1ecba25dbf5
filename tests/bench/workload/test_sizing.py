"""Workload sizing: the seed's numbers, overrides, validation, and where KV bytes come from."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tmesh.bench.workload.sizing import SizingError, contexts_for, resolve_kv_bytes, size_workload
from tmesh.results.records import WorkloadSpec


def test_seed_example_gpt_oss_20b() -> None:
    spec = size_workload("openai/gpt-oss-20b", 49152, 100)
    assert spec == WorkloadSpec(
        model="openai/gpt-oss-20b",
        num_contexts=61,
        questions_per_context=61,
        max_inflight=20,
        input_length=32000,
        output_length=100,
        kv_bytes_per_token=49152,
        offload_size_gb=100,
        seed=0,
        api="completions",
    )


def test_design_example_qwen3_30b_a3b() -> None:
    spec = size_workload("Qwen/Qwen3-30B-A3B", 98304, 100, 32000, 100)
    assert (spec.num_contexts, spec.questions_per_context, spec.max_inflight) == (30, 30, 10)


def test_formula_floors() -> None:
    # 0.9 x 100 GiB / (49152 x 32100) = 61.25 -> 61
    assert contexts_for(49152, 100, 32000, 100) == 61
    assert contexts_for(49152, 200, 32000, 100) == 122
    assert contexts_for(49152, 100, 8000, 100) == 242


def test_inflight_at_least_one() -> None:
    spec = size_workload("m", 49152, 2)
    assert spec.num_contexts == 1
    assert spec.max_inflight == 1


def test_overrides() -> None:
    spec = size_workload(
        "m",
        49152,
        100,
        8000,
        50,
        num_contexts=7,
        questions_per_context=3,
        max_inflight=5,
        seed=42,
        api="chat",
    )
    assert (spec.num_contexts, spec.questions_per_context, spec.max_inflight) == (7, 3, 5)
    assert (spec.input_length, spec.output_length, spec.seed, spec.api) == (8000, 50, 42, "chat")


def test_contexts_override_needs_no_kv_size() -> None:
    spec = size_workload("unknown", None, 100, num_contexts=9)
    assert (spec.num_contexts, spec.questions_per_context, spec.max_inflight) == (9, 9, 3)
    assert spec.kv_bytes_per_token is None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kv_bytes_per_token": None}, "--kv-bytes-per-token, --model-config, or --num-contexts"),
        ({"kv_bytes_per_token": 0}, "--kv-bytes-per-token must be"),
        ({"offload_size_gb": 0}, "--offload-size must be"),
        ({"offload_size_gb": -5.0}, "--offload-size must be"),
        ({"offload_size_gb": float("nan")}, "--offload-size must be"),
        ({"offload_size_gb": 0.5}, "holds no context"),
        ({"input_length": 0}, "--input-length must be"),
        ({"output_length": -1}, "--output-length must be"),
        ({"num_contexts": 0}, "--num-contexts must be"),
        ({"questions_per_context": 0}, "--questions-per-context must be"),
        ({"max_inflight": -2}, "--max-inflight must be"),
        ({"api": "responses"}, "--api must be one of completions, chat"),
    ],
)
def test_validation(kwargs: dict, fragment: str) -> None:
    args = {"model": "m", "kv_bytes_per_token": 49152, "offload_size_gb": 100.0, **kwargs}
    with pytest.raises(SizingError) as info:
        size_workload(**args)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_resolve_prefers_flag_then_config_then_table(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(
        orjson.dumps(
            {"num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 8, "dtype": "float16"}
        )
    )
    assert resolve_kv_bytes("openai/gpt-oss-20b", 1000, config) == 1000
    assert resolve_kv_bytes("openai/gpt-oss-20b", None, config) == 2 * 2 * 4 * 8 * 2
    assert resolve_kv_bytes("openai/gpt-oss-20b", None, None) == 49152


def test_resolve_unknown_model_names_both_flags() -> None:
    with pytest.raises(SizingError) as info:
        resolve_kv_bytes("tiny-llama", None, None)
    message = str(info.value)
    assert "'tiny-llama'" in message
    assert "--kv-bytes-per-token" in message
    assert "--model-config" in message


def test_resolve_bad_flag_and_bad_config(tmp_path: Path) -> None:
    with pytest.raises(SizingError, match="--kv-bytes-per-token must be"):
        resolve_kv_bytes("m", 0, None)
    with pytest.raises(SizingError, match="cannot read"):
        resolve_kv_bytes("m", None, tmp_path / "missing.json")

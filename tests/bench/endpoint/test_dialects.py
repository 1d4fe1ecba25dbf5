"""Server dialects: token counts and context limits in each engine's own shapes."""

from __future__ import annotations

import pytest

from tmesh.bench.endpoint.dialects import (
    CONTEXT_PROBES,
    TOKENIZE_DIALECTS,
    ContextLimit,
    context_from_model,
    token_count,
)


def test_each_dialect_asks_for_the_text_without_special_tokens() -> None:
    bodies = {d.server: d.body("m", "Hello world") for d in TOKENIZE_DIALECTS}
    assert bodies == {
        "vLLM/SGLang": {"prompt": "Hello world", "add_special_tokens": False, "model": "m"},
        "llama.cpp": {"content": "Hello world", "add_special": False},
        "TGI": {"inputs": "Hello world", "add_special_tokens": False},
    }


@pytest.mark.parametrize(
    ("answer", "count"),
    [
        ({"count": 3, "tokens": [1, 2, 3], "max_model_len": 4096}, 3),
        ({"tokens": [5, 6]}, 2),
        ({"tokens": [{"id": 0, "piece": "<s>"}, {"id": 45, "piece": "H"}]}, 2),
        ([{"id": 1, "text": "a", "start": 0, "stop": 1}], 1),
        ({"tokens": []}, 0),
        ({"count": True}, None),
        ({"error": "no"}, None),
        ("tokens", None),
    ],
)
def test_token_count_from_any_shape(answer: object, count: int | None) -> None:
    assert token_count(answer) == count


@pytest.mark.parametrize(
    ("entry", "limit"),
    [
        ({"id": "m", "max_model_len": 40960}, ContextLimit(40960, "max_model_len in /v1/models")),
        (
            {"id": "m", "meta": {"n_ctx": 8192, "n_ctx_train": 8192}},
            ContextLimit(8192, "meta.n_ctx in /v1/models"),
        ),
        ({"id": "m", "context_length": 4096}, ContextLimit(4096, "context_length in /v1/models")),
        ({"id": "m", "max_model_len": None, "meta": "x"}, None),
        ({"id": "m", "max_model_len": True}, None),
        ({"id": "m"}, None),
    ],
)
def test_context_limit_from_a_model_entry(entry: dict[str, object], limit: object) -> None:
    assert context_from_model(entry) == limit


def test_context_probes_read_each_servers_page() -> None:
    answers = {
        "/props": {"default_generation_settings": {"n_ctx": 8192}, "total_slots": 4},
        "/info": {"max_input_tokens": 4095, "max_total_tokens": 4096},
        "/get_server_info": {"context_length": 32768},
    }
    limits = [probe.limit(answers[probe.path]) for probe in CONTEXT_PROBES]
    assert [limit.tokens if limit else None for limit in limits] == [8192, 4096, 32768]
    assert limits[0] == ContextLimit(8192, "/props (llama.cpp)")
    assert all(probe.limit({"unrelated": 1}) is None for probe in CONTEXT_PROBES)
    assert all(probe.limit("<html>") is None for probe in CONTEXT_PROBES)

"""The OpenAI API description: request bodies per API and the fields answers are read from."""

from __future__ import annotations

from tmesh.bench.endpoint.openai import (
    ALL_ROUTES,
    generation_body,
    is_error_event,
    route,
    usage_counts,
    with_prompt,
)


def test_streaming_body_asks_for_usage_and_exact_length() -> None:
    body = generation_body("completions", "m", 100, stream=True, ignore_eos=True)
    assert body == {
        "model": "m",
        "max_tokens": 100,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        "min_tokens": 100,
    }
    plain = generation_body("chat", "m", 1, stream=False, ignore_eos=False)
    assert plain == {"model": "m", "max_tokens": 1, "stream": False}


def test_prompt_goes_where_each_api_reads_it_and_the_template_stays_as_it_was() -> None:
    template = generation_body("chat", "m", 4, stream=True, ignore_eos=False)
    chat = with_prompt(template, "chat", "hi")
    assert chat["messages"] == [{"role": "user", "content": "hi"}] and "prompt" not in chat
    assert with_prompt(template, "completions", "hi")["prompt"] == "hi"
    assert "messages" not in template and "prompt" not in template
    assert (route("chat"), route("completions")) == ("/chat/completions", "/completions")
    assert ALL_ROUTES.index("/chat/completions") < ALL_ROUTES.index("/completions")


def test_usage_counts() -> None:
    full = {
        "prompt_tokens": 40,
        "completion_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 32},
    }
    assert usage_counts(full) == (4, 40, 32)
    assert usage_counts({"completion_tokens": 4, "prompt_tokens_details": None}) == (4, None, None)
    assert usage_counts({"prompt_tokens": 40}) is None
    assert usage_counts({"completion_tokens": "4"}) is None
    assert usage_counts(None) is None


def test_error_events() -> None:
    assert is_error_event({"error": {"message": "oom"}})
    assert is_error_event({"object": "error", "message": "boom"})
    assert not is_error_event({"object": "text_completion", "choices": []})

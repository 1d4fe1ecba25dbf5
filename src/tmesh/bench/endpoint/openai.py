"""The OpenAI API as tmesh uses it, in one place: routes, request bodies, and where an answer puts
its generated text and its token counts.

Several stages speak the API (discovery, the capability probe, the token calibration, the
streaming client), and a field written one way in one of them and read another way elsewhere would
make the benchmark measure something it did not ask for. Servers also differ around the standard:
vLLM and SGLang accept `ignore_eos`/`min_tokens` and serve `/tokenize` beside `/v1`, and reasoning
models stream their thinking as `reasoning_content` (vLLM, SGLang) or `reasoning` (newer vLLM,
Ollama). Those facts live here too, so each is stated once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tmesh.results.records import Api

COMPLETIONS_ROUTE = "/completions"
CHAT_ROUTE = "/chat/completions"
MODELS_ROUTE = "/models"
ROUTES: Mapping[Api, str] = {"completions": COMPLETIONS_ROUTE, "chat": CHAT_ROUTE}
# Every route tmesh calls under the API base, longest first so a suffix match finds the right one.
ALL_ROUTES = (CHAT_ROUTE, COMPLETIONS_ROUTE, MODELS_ROUTE)

TEXT_FIELDS: Mapping[Api, tuple[str, ...]] = {
    "completions": ("text",),
    "chat": ("content", "reasoning_content", "reasoning"),
}
"""The fields of a streamed choice that carry generated text. Reasoning counts: the server spent
decode steps on it, so an event that carries only reasoning is a token arrival like any other."""
CHAT_DELTA = "delta"
"""In a chat stream the text fields sit in each choice's `delta`; in a completions stream in the
choice itself."""


def route(api: Api) -> str:
    """The path, under the API base, that generates text for `api`."""
    return ROUTES[api]


def generation_body(
    api: Api, model: str, max_tokens: int, *, stream: bool, ignore_eos: bool
) -> dict[str, Any]:
    """A generation request without its prompt (`with_prompt` adds it).

    `ignore_eos` also sends `min_tokens = max_tokens` (vLLM and SGLang accept both; some versions
    honour only one), so every answer has exactly the requested length and decode numbers stay
    comparable between servers.
    """
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "stream": stream}
    if stream:
        # A final event with `usage`: exact token counts rather than a count of events.
        body["stream_options"] = {"include_usage": True}
    if ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = max_tokens
    return body


def with_prompt(body: Mapping[str, Any], api: Api, prompt: str) -> dict[str, Any]:
    """A copy of `body` carrying `prompt`: as `prompt` for completions, as the one user message
    for chat (whose chat template then adds its own tokens around it)."""
    request = dict(body)
    if api == "chat":
        request["messages"] = [{"role": "user", "content": prompt}]
    else:
        request["prompt"] = prompt
    return request


def with_messages(body: Mapping[str, Any], messages: list[dict[str, str]]) -> dict[str, Any]:
    """A copy of a chat `body` carrying a whole conversation (system, user and assistant turns)."""
    request = dict(body)
    request["messages"] = messages
    return request


def answer_text(answer: Any, api: Api) -> str | None:
    """The generated text of a non-streamed answer's first choice (`text`, or the chat message's
    `content`), None when it has none."""
    try:
        choice = answer["choices"][0]
        text = choice["message"]["content"] if api == "chat" else choice["text"]
    except (KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


def is_error_event(event: Mapping[str, Any]) -> bool:
    """An error reported inside a 200 stream: `{"error": …}`, or vLLM's `{"object": "error", …}`."""
    return "error" in event or event.get("object") == "error"


def usage_counts(usage: Any) -> tuple[int, int | None, int | None] | None:
    """(completion, prompt, cached) tokens of a `usage` object; None without a completion count.
    Cached prompt tokens are in `prompt_tokens_details.cached_tokens` (vLLM with prefix caching,
    SGLang, OpenAI); servers that do not report them leave it out."""
    if not isinstance(usage, dict) or not isinstance(usage.get("completion_tokens"), int):
        return None
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return (
        usage["completion_tokens"],
        prompt if isinstance(prompt, int) else None,
        cached if isinstance(cached, int) else None,
    )


def tokenize_url(base_url: str) -> str:
    """vLLM and SGLang serve `/tokenize` at the root, beside (not under) `/v1`."""
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    return root + "/tokenize"

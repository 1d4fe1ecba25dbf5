"""What servers say beyond the OpenAI API, in each one's own words: token counts and context size.

Every engine answers the same `/v1/completions`, but counts tokens and states its context length
its own way: vLLM and SGLang take `{"prompt"}` at `/tokenize` and list `max_model_len` with the
model; llama.cpp takes `{"content"}` and states its per-slot context in the model's `meta` and in
`/props`; TGI takes `{"inputs"}` and states its limits in `/info`. A server that does not know a
dialect often answers it anyway (llama.cpp answers vLLM's shape with 200 and no tokens), so an
answer is only trusted when it is plausible, and the caller tries the next dialect otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TokenizeDialect:
    """One way of asking a server's tokenizer for the tokens of a text (no special tokens)."""

    server: str
    text_field: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    with_model: bool = False

    def body(self, model: str, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {self.text_field: text, **self.extra}
        if self.with_model:
            body["model"] = model
        return body


TOKENIZE_DIALECTS = (
    TokenizeDialect("vLLM/SGLang", "prompt", {"add_special_tokens": False}, with_model=True),
    TokenizeDialect("llama.cpp", "content", {"add_special": False}),
    TokenizeDialect("TGI", "inputs", {"add_special_tokens": False}),
)
TOKENIZE_PATH = "/tokenize"


def token_count(answer: Any) -> int | None:
    """The number of tokens in any dialect's answer, or None if it has no recognisable count.

    vLLM and SGLang give `count` and `tokens`, llama.cpp `tokens` (ids, or objects with
    `with_pieces`), TGI a bare list of token objects.
    """
    if isinstance(answer, list):
        return len(answer)
    if not isinstance(answer, dict):
        return None
    count = answer.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    tokens = answer.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


@dataclass(frozen=True)
class ContextLimit:
    """The most tokens (prompt and output) one request may hold, and where the server said so."""

    tokens: int
    source: str


def context_from_model(entry: Mapping[str, Any]) -> ContextLimit | None:
    """The limit a `/v1/models` entry states: vLLM and SGLang's `max_model_len`, llama.cpp's
    per-slot `meta.n_ctx`, or the `context_length` other servers use."""
    meta = entry.get("meta")
    candidates: list[tuple[Any, str]] = [
        (entry.get("max_model_len"), "max_model_len in /v1/models"),
        (meta.get("n_ctx") if isinstance(meta, Mapping) else None, "meta.n_ctx in /v1/models"),
        (entry.get("context_length"), "context_length in /v1/models"),
        (entry.get("max_context_length"), "max_context_length in /v1/models"),
    ]
    for value, source in candidates:
        if _positive_int(value):
            return ContextLimit(value, source)
    return None


@dataclass(frozen=True)
class ContextProbe:
    """A server page that states the context length, and how to read it from the JSON answer."""

    server: str
    path: str
    read: Callable[[Any], Any]

    def limit(self, answer: Any) -> ContextLimit | None:
        try:
            value = self.read(answer)
        except (AttributeError, KeyError, TypeError):
            return None
        if not _positive_int(value):
            return None
        return ContextLimit(value, f"{self.path} ({self.server})")


CONTEXT_PROBES = (
    ContextProbe("llama.cpp", "/props", lambda a: a["default_generation_settings"]["n_ctx"]),
    ContextProbe("TGI", "/info", lambda a: a["max_total_tokens"]),
    ContextProbe("SGLang", "/get_server_info", lambda a: a["context_length"]),
)
"""Pages asked, in order, when `/v1/models` states no limit (paths at the server's root)."""


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0

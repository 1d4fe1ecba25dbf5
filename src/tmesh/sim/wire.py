"""The OpenAI wire format as the simulated engine speaks it: error bodies, request fields, and
pre-encoded SSE chunks.

The simulator has to look like vLLM on the wire (OpenAI's exact SSE chunk shapes, vLLM's error
messages) while keeping its own CPU cost low: each SSE event is built by concatenating
pre-encoded bytes, one event per engine step however many tokens the step produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from tmesh.sim.faults import Fault

# The generated "text": one sim-tokenizer token per word, with the leading space so that
# concatenated tokens read as words. Plain ASCII letters only, so they need no JSON escaping.
FILLER_WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "model", "cache", "token",
    "prefix", "block", "memory", "engine", "request", "batch", "decode", "prefill", "tier",
    "offload", "latency", "stream", "answer",
)  # fmt: skip
_WORD_BYTES = tuple(f" {word}".encode() for word in FILLER_WORDS)
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
DONE = b"data: [DONE]\n\n"
# The simulated model never emits EOS: every choice generates exactly its max_tokens (as with
# `ignore_eos`), so every choice finishes for the same reason.
FINISH_REASON = "length"
# vLLM's default for /v1/completions when max_tokens is absent (chat fills the context instead).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
OWNER = "tmesh-sim"


def filler_text(start: int, count: int) -> bytes:
    """`count` filler tokens starting at word `start` (deterministic, one word per token)."""
    n = len(_WORD_BYTES)
    return b"".join(_WORD_BYTES[(start + i) % n] for i in range(count))


class ApiError(Exception):
    """A request the API refuses; becomes an OpenAI-shaped error response."""

    def __init__(
        self, status: int, message: str, type_: str, param: str | None = None, code: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> web.Response:
        return web.Response(
            status=self.status, body=orjson.dumps(self.body()), content_type="application/json"
        )


def bad_request(message: str, param: str | None = None) -> ApiError:
    """vLLM's shape for a request it rejects (`BadRequestError`, code 400)."""
    return ApiError(400, message, "BadRequestError", param, 400)


def context_length_error(
    max_model_len: int, prompt_tokens: int, max_tokens: int | None
) -> ApiError:
    """vLLM's message for a prompt (plus requested output) longer than the model's context."""
    if max_tokens is None:
        return bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {prompt_tokens} input tokens. Please reduce the length of the input "
            "messages."
        )
    return bad_request(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in "
        "the completion). Please reduce the length of the messages or completion."
    )


def fault_error_body(fault: Fault) -> tuple[bytes, str]:
    """Body and content type of an injected HTTP error: OpenAI JSON, or what proxies send."""
    reason = _reason(fault.status)
    if fault.body == "text":
        return f"{fault.status} {reason}: simulated fault".encode(), "text/plain"
    if fault.body == "html":
        html = (
            f"<html><head><title>{fault.status} {reason}</title></head><body>"
            f"<center><h1>{fault.status} {reason}</h1></center><hr><center>tmesh-sim</center>"
            "</body></html>"
        )
        return html.encode(), "text/html"
    if fault.status == 429:
        error = ApiError(429, "Rate limit reached (simulated).", "rate_limit_error", None, 429)
    else:
        error = ApiError(fault.status, f"{reason} (simulated).", "server_error", None, fault.status)
    return orjson.dumps(error.body()), "application/json"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def optional_int(body: dict[str, Any], key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad_request(f"{key} must be an integer >= {minimum}, got {value!r}", key)
    return value


def optional_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be a boolean, got {value!r}", key)
    return value


def token_ids(value: Any, vocab_size: int) -> list[int] | None:
    """`value` as token ids; None when it is not a list of ints, 400 when an id is out of range."""
    if not isinstance(value, list) or not value or not all(type(t) is int for t in value):
        return None
    if min(value) < 0 or max(value) >= vocab_size:
        raise bad_request(f"token ids must be in [0, {vocab_size})", "prompt")
    return value


@dataclass
class Generation:
    """A parsed generation request: what to submit to the engine and how to answer."""

    chat: bool
    prompts: list[list[int]]
    max_tokens: list[int]
    stream: bool
    include_usage: bool


class Chunks:
    """Pre-encoded pieces of one response's SSE events.

    A token event is `prefix + words + suffix`: no JSON encoder runs per token, and the words need
    no escaping (see FILLER_WORDS).
    """

    def __init__(
        self, chat: bool, cid: str, created: int, model: str, include_usage: bool, choices: int
    ) -> None:
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = orjson.dumps({"id": cid, "object": obj, "created": created, "model": model})[:-1]
        self._head = b"data: " + head
        tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        finish = orjson.dumps(FINISH_REASON)
        self._choice = [self._head + b',"choices":[{"index":%d,' % i for i in range(choices)]
        if chat:
            self._open = b'"delta":{"content":"'
            self._close = b'"},"logprobs":null,"finish_reason":null}]' + tail
            self._role = b'"delta":{"role":"assistant","content":""},"logprobs":null,'
            self._role += b'"finish_reason":null}]' + tail
            self._finish = b'"delta":{},"logprobs":null,"finish_reason":' + finish + b"}]" + tail
        else:
            self._open = b'"text":"'
            self._close = b'","logprobs":null,"finish_reason":null}]' + tail
            self._role = b""
            self._finish = b'"text":"","logprobs":null,"finish_reason":' + finish + b"}]" + tail

    def role(self, index: int) -> bytes:
        return self._choice[index] + self._role if self._role else b""

    def tokens(self, index: int, text: bytes) -> bytes:
        return self._choice[index] + self._open + text + self._close

    def finish(self, index: int) -> bytes:
        return self._choice[index] + self._finish

    def usage(self, usage: dict[str, Any]) -> bytes:
        return self._head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"

    def malformed(self) -> bytes:
        """An event whose data is not JSON (a chunk cut in the middle), for the malformed fault."""
        return self._choice[0] + self._open + b"\n\n"

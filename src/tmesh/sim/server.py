"""OpenAI-compatible HTTP front end of the simulated engine (aiohttp).

The benchmark measures servers through their HTTP API only, so the simulator has to look like vLLM
on the wire: OpenAI's exact SSE chunk shapes, vLLM's `/tokenize`, `/metrics` and error messages.
All the timing comes from `sim.engine`; this module only translates between HTTP and engine
requests, acts out injected faults and keeps its own CPU cost low, because at the benchmark's
default load it receives 32k-token prompts (~150 KB each) many times a second on a 2-core machine:
bodies are parsed once with orjson, prompts go through the engine's memoised tokenizer, and each
SSE event is built by concatenating pre-encoded bytes (one event per engine step, however many
tokens the step produced).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tmesh.sim.engine import Engine, SimRequest
from tmesh.sim.faults import FAULT_HEADER, Fault, FaultConfig, FaultInjector
from tmesh.sim.profiles import EngineConfig

log = logging.getLogger("tmesh.sim.server")

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
_MAX_BODY_BYTES = 64 * 2**20
_SHUTDOWN_GRACE_SECONDS = 1.0
_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_DONE = b"data: [DONE]\n\n"
# The simulated model never emits EOS: every choice generates exactly its max_tokens (as with
# `ignore_eos`), so every choice finishes for the same reason.
_FINISH_REASON = "length"
# vLLM's default for /v1/completions when max_tokens is absent (chat fills the context instead).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
_OWNER = "tmesh-sim"


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


def _optional_int(body: dict[str, Any], key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad_request(f"{key} must be an integer >= {minimum}, got {value!r}", key)
    return value


def _optional_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be a boolean, got {value!r}", key)
    return value


def _token_ids(value: Any, vocab_size: int) -> list[int] | None:
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


class _Chunks:
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
        finish = orjson.dumps(_FINISH_REASON)
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


async def _steps(sims: Sequence[SimRequest]) -> AsyncIterator[tuple[int, int]]:
    """(choice index, tokens) per engine step, merged over the requests of one HTTP request."""
    if len(sims) == 1:
        async for count in sims[0].stream():
            yield 0, count
        return
    queue: asyncio.Queue[tuple[int, int | BaseException]] = asyncio.Queue()

    async def pump(index: int, sim: SimRequest) -> None:
        try:
            async for count in sim.stream():
                queue.put_nowait((index, count))
        except Exception as exc:
            queue.put_nowait((index, exc))
        finally:
            queue.put_nowait((index, -1))

    tasks = [asyncio.create_task(pump(i, sim)) for i, sim in enumerate(sims)]
    try:
        remaining = len(sims)
        while remaining:
            index, item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item < 0:
                remaining -= 1
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()


class _Api:
    """The route handlers, bound to one engine."""

    def __init__(
        self,
        engine: Engine,
        faults: FaultInjector,
        api_key: str | None,
        prompt_tokens_details: bool,
    ) -> None:
        self.engine = engine
        self.faults = faults
        self.model: str = engine.config.model
        self.max_model_len: int = engine.config.max_model_len
        self.vocab_size: int = engine.config.vocab_size
        self.tokenizer = engine.tokenizer
        self._auth = f"Bearer {api_key}".encode() if api_key else None
        self._details = prompt_tokens_details
        self._run_id = secrets.token_hex(6)
        card = {
            "id": self.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": _OWNER,
            "root": self.model,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [],
        }
        self._models_body = orjson.dumps({"object": "list", "data": [card]})

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/models", self.models),
            web.post("/v1/completions", self.completions),
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/tokenize", self.tokenize),
            web.get("/health", self.health),
            web.get("/metrics", self.metrics),
            web.post("/reset_prefix_cache", self.reset_prefix_cache),
        ]

    def _check_auth(self, request: web.Request) -> None:
        """Bearer check for /v1 routes only, as vLLM does (health, metrics, tokenize stay open)."""
        if self._auth is None:
            return
        given = request.headers.get("Authorization")
        if given is None:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
            )
        if not hmac.compare_digest(given.encode(), self._auth):
            raise ApiError(
                401, "Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key"
            )

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object")
        model = body.get("model")
        if model is not None and model != self.model:
            raise ApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                None,
                "model_not_found",
            )
        return body

    def _encode(self, text: Any) -> list[int]:
        if not isinstance(text, str):
            raise bad_request("prompt must be a string, a list of strings or token ids", "prompt")
        return self.tokenizer.encode(text)

    def _completion_prompts(self, body: dict[str, Any]) -> list[list[int]]:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return [self._encode(prompt)]
        ids = _token_ids(prompt, self.vocab_size)
        if ids is not None:
            return [ids]
        if isinstance(prompt, list) and prompt:
            return [_token_ids(p, self.vocab_size) or self._encode(p) for p in prompt]
        raise bad_request("prompt must be a string, a list of strings or token ids", "prompt")

    def _chat_prompt(self, body: dict[str, Any]) -> list[int]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("messages must be a non-empty list", "messages")
        if not all(isinstance(m, dict) for m in messages):
            raise bad_request("each message must be an object", "messages")
        try:
            text = self.tokenizer.render_chat(messages)
        except ValueError as exc:
            raise bad_request(str(exc), "messages") from None
        return self.tokenizer.encode(text)

    def _parse(self, body: dict[str, Any], chat: bool) -> Generation:
        if chat:
            prompts = [self._chat_prompt(body)]
            requested = _optional_int(body, "max_completion_tokens", 1)
            if requested is None:
                requested = _optional_int(body, "max_tokens", 1)
        else:
            prompts = self._completion_prompts(body)
            requested = _optional_int(body, "max_tokens", 1)
            if "max_tokens" not in body:
                requested = COMPLETIONS_DEFAULT_MAX_TOKENS
        if body.get("n") not in (None, 1):
            raise bad_request("the simulated engine supports only n=1", "n")
        min_tokens = _optional_int(body, "min_tokens", 0)
        if min_tokens is not None and requested is not None and min_tokens > requested:
            raise bad_request("min_tokens must be less than or equal to max_tokens", "min_tokens")
        _optional_bool(body, "ignore_eos")
        stream = _optional_bool(body, "stream")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise bad_request("stream_options must be an object", "stream_options")
        include_usage = stream and bool(options.get("include_usage"))
        max_tokens = []
        for prompt in prompts:
            if not prompt:
                raise bad_request("the prompt must not be empty", "prompt")
            limit = self.max_model_len - len(prompt)
            if limit < 1 or (requested is not None and requested > limit):
                raise context_length_error(self.max_model_len, len(prompt), requested)
            max_tokens.append(limit if requested is None else requested)
        return Generation(chat, prompts, max_tokens, stream, include_usage)

    def _usage(self, gen: Generation, sims: Sequence[SimRequest], completion: int) -> dict:
        prompt = sum(len(p) for p in gen.prompts)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self._details:
            usage["prompt_tokens_details"] = {"cached_tokens": sum(s.cached_tokens for s in sims)}
        return usage

    async def models(self, request: web.Request) -> web.Response:
        try:
            self._check_auth(request)
        except ApiError as exc:
            return exc.response()
        return web.Response(body=self._models_body, content_type="application/json")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            self._check_auth(request)
            gen = self._parse(await self._body(request), chat)
            fault = self.faults.choose(request.headers.get(FAULT_HEADER))
        except ValueError as exc:
            return bad_request(str(exc)).response()
        except ApiError as exc:
            return exc.response()
        if fault is not None and fault.before_response:
            answer = await self._fault_before(request, fault)
            if answer is not None:
                return answer
            fault = None
        sims = [self.engine.submit(p, m) for p, m in zip(gen.prompts, gen.max_tokens, strict=True)]
        try:
            if gen.stream:
                return await self._stream(request, gen, sims, fault)
            return await self._complete(request, gen, sims, fault)
        finally:
            for sim in sims:
                sim.cancel()

    async def _fault_before(self, request: web.Request, fault: Fault) -> web.Response | None:
        """Act out a fault that comes before the response; None means "now answer normally"."""
        self.faults.record(fault, request.path)
        if fault.status == 200:
            await asyncio.sleep(fault.seconds)
            return None
        body, content_type = fault_error_body(fault)
        headers = {}
        if fault.status == 429 and fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        return web.Response(
            status=fault.status, body=body, content_type=content_type, headers=headers
        )

    def _ids(self, chat: bool, sims: Sequence[SimRequest]) -> tuple[str, int]:
        """Response id (unique across server runs, like OpenAI's) and creation time."""
        kind = "chatcmpl" if chat else "cmpl"
        return f"{kind}-{self._run_id}{sims[0].request_id:x}", int(time.time())

    async def _stream(
        self,
        request: web.Request,
        gen: Generation,
        sims: Sequence[SimRequest],
        fault: Fault | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        try:
            await response.prepare(request)
            await self._write_events(request, response, gen, sims, fault)
        except ConnectionError:
            # The client left between two writes, before aiohttp noticed and cancelled this
            # handler; returning the response lets aiohttp drop the connection quietly.
            pass
        return response

    async def _write_events(
        self,
        request: web.Request,
        response: web.StreamResponse,
        gen: Generation,
        sims: Sequence[SimRequest],
        fault: Fault | None,
    ) -> None:
        """The SSE events of one response, with an in-stream fault (if any) acted out on the way."""
        cid, created = self._ids(gen.chat, sims)
        chunks = _Chunks(gen.chat, cid, created, self.model, gen.include_usage, len(sims))
        starts = [len(p) for p in gen.prompts]
        sent = [0] * len(sims)
        total = 0
        async with aclosing(_steps(sims)) as steps:
            if fault is not None and fault.after_tokens == 0:
                if await self._fault_in_stream(request, response, chunks, fault):
                    return
                fault = None
            async for index, count in steps:
                while count:
                    take = count if fault is None else min(count, fault.after_tokens - total)
                    text = filler_text(starts[index] + sent[index], take)
                    event = chunks.tokens(index, text)
                    if sent[index] == 0:
                        event = chunks.role(index) + event
                    await response.write(event)
                    sent[index] += take
                    total += take
                    count -= take
                    if fault is not None and total >= fault.after_tokens:
                        if await self._fault_in_stream(request, response, chunks, fault):
                            return
                        fault = None
        if fault is not None and await self._fault_in_stream(request, response, chunks, fault):
            return
        tail = [chunks.finish(i) for i in range(len(sims))]
        if gen.include_usage:
            tail.append(chunks.usage(self._usage(gen, sims, total)))
        tail.append(_DONE)
        await response.write_eof(b"".join(tail))

    async def _fault_in_stream(
        self, request: web.Request, response: web.StreamResponse, chunks: _Chunks, fault: Fault
    ) -> bool:
        """Act out a fault inside a 200 stream; True when it ended the stream."""
        self.faults.record(fault, request.path)
        if fault.name == "stall":
            await asyncio.sleep(fault.seconds)
            return False
        if fault.name == "malformed":
            await response.write(chunks.malformed())
            return False
        if fault.name == "error-in-stream":
            error = ApiError(500, "simulated engine error", "InternalServerError", None, 500)
            await response.write_eof(b"data: " + orjson.dumps(error.body()) + b"\n\n" + _DONE)
            return True
        _abort(request)
        return True

    async def _complete(
        self,
        request: web.Request,
        gen: Generation,
        sims: Sequence[SimRequest],
        fault: Fault | None,
    ) -> web.StreamResponse:
        produced = [0] * len(sims)
        async with aclosing(_steps(sims)) as steps:
            async for index, count in steps:
                produced[index] += count
        if fault is not None and fault.name == "stall":
            self.faults.record(fault, request.path)
            await asyncio.sleep(fault.seconds)
            fault = None
        cid, created = self._ids(gen.chat, sims)
        choices = []
        for index, count in enumerate(produced):
            text = filler_text(len(gen.prompts[index]), count).decode()
            choice: dict[str, Any] = {"index": index}
            if gen.chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            choice["logprobs"] = None
            choice["finish_reason"] = _FINISH_REASON
            choices.append(choice)
        result = {
            "id": cid,
            "object": "chat.completion" if gen.chat else "text_completion",
            "created": created,
            "model": self.model,
            "choices": choices,
            "usage": self._usage(gen, sims, sum(produced)),
        }
        body = orjson.dumps(result)
        if fault is None:
            return web.Response(body=body, content_type="application/json")
        return await self._fault_in_body(request, fault, body)

    async def _fault_in_body(
        self, request: web.Request, fault: Fault, body: bytes
    ) -> web.StreamResponse:
        """Non-streaming counterparts of the in-stream faults: a truncated or broken 200 body."""
        self.faults.record(fault, request.path)
        if fault.name == "error-in-stream":
            error = ApiError(500, "simulated engine error", "InternalServerError", None, 500)
            return web.Response(body=orjson.dumps(error.body()), content_type="application/json")
        if fault.name == "malformed":
            return web.Response(body=body[: len(body) // 2], content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        _abort(request)
        return response

    async def tokenize(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            _optional_bool(body, "add_special_tokens")
            if "messages" in body:
                tokens = self._chat_prompt(body)
            elif "prompt" in body:
                tokens = self._encode(body["prompt"])
            else:
                raise bad_request("either prompt or messages is required")
        except ApiError as exc:
            return exc.response()
        result = {"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens}
        return web.Response(body=orjson.dumps(result), content_type="application/json")

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def metrics(self, request: web.Request) -> web.Response:
        text = generate_latest(self.engine.metrics.registry) + generate_latest(self.faults.registry)
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def reset_prefix_cache(self, request: web.Request) -> web.Response:
        """vLLM's admin endpoint; `?reset_external=true` also empties the CPU tier."""
        reset_external = request.query.get("reset_external", "").lower() in ("1", "true")
        if self.engine.reset_prefix_cache(reset_external=reset_external):
            return web.Response()
        return ApiError(
            409,
            "Cannot reset the prefix cache while requests are running.",
            "ConflictError",
            None,
            409,
        ).response()


def _abort(request: web.Request) -> None:
    """Drop the connection without a proper end (no final chunk, no FIN handshake first)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


class SimulatorHandle:
    """A running simulator: its URL, its engine, and control over its listening socket."""

    def __init__(
        self,
        runner: web.AppRunner,
        site: web.TCPSite,
        engine: Engine,
        faults: FaultInjector,
        host: str,
        port: int,
    ) -> None:
        self._runner = runner
        self._site: web.TCPSite | None = site
        self.engine = engine
        self.faults = faults
        self.host = host
        self.port = port
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{port}"

    @property
    def paused(self) -> bool:
        return self._site is None

    async def pause(self) -> None:
        """Act out a server restart's outage: stop listening (new connections are refused) and
        drop every open connection, cancelling their engine requests."""
        if self._site is None:
            return
        await self._site.stop()
        self._site = None
        self._drop_connections()
        log.info("paused: not listening on %s", self.url)

    async def resume(self) -> None:
        """Listen again on the same port, as a restarted server would."""
        if self._site is not None:
            return
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self._site = site
        log.info("resumed: listening on %s", self.url)

    def _drop_connections(self) -> None:
        server = self._runner.server
        for connection in server.connections if server is not None else []:
            if connection.transport is not None:
                connection.transport.abort()

    async def stop(self) -> None:
        """Stop listening, drop open streams, stop the engine; idempotent."""
        if self._runner.server is None:
            return
        self._drop_connections()
        await self._runner.cleanup()
        await self.engine.stop()
        log.info("stopped; %s", self.faults.summary())

    async def __aenter__(self) -> SimulatorHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def build_app(
    engine: Engine,
    faults: FaultInjector,
    api_key: str | None = None,
    prompt_tokens_details: bool = True,
) -> web.Application:
    """The aiohttp application serving `engine` (the engine must be started separately)."""
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app.add_routes(_Api(engine, faults, api_key, prompt_tokens_details).routes())
    return app


async def start_simulator(
    config: EngineConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: FaultConfig | None = None,
    api_key: str | None = None,
    *,
    prompt_tokens_details: bool = True,
) -> SimulatorHandle:
    """Start an engine and its HTTP server on `host:port` (0 = a free port).

    `prompt_tokens_details=False` leaves `usage.prompt_tokens_details` out, as vLLM does without
    `--enable-prompt-tokens-details`. Raises OSError when the address cannot be bound.
    """
    engine = Engine(config)
    await engine.start()
    injector = FaultInjector(faults)
    runner = web.AppRunner(
        build_app(engine, injector, api_key, prompt_tokens_details),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_GRACE_SECONDS,
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        await engine.stop()
        raise
    bound_port = runner.addresses[0][1]
    return SimulatorHandle(runner, site, engine, injector, host, bound_port)

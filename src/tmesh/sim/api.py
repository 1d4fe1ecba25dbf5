"""The route handlers of the simulated engine: OpenAI requests in, engine requests and faults out.

All the timing comes from `sim.engine`; this module only translates between HTTP and engine
requests and acts out injected faults. At the benchmark's default load it receives 32k-token
prompts (~150 KB each) many times a second on a 2-core machine, so bodies are parsed once with
orjson and prompts go through the engine's memoised tokenizer.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tmesh.sim.engine import Engine
from tmesh.sim.faults import FAULT_HEADER, Fault, FaultInjector
from tmesh.sim.request import SimRequest
from tmesh.sim.wire import (
    COMPLETIONS_DEFAULT_MAX_TOKENS,
    DONE,
    FINISH_REASON,
    OWNER,
    SSE_HEADERS,
    ApiError,
    Chunks,
    Generation,
    bad_request,
    context_length_error,
    fault_error_body,
    filler_text,
    optional_bool,
    optional_int,
    token_ids,
)


class Api:
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
            "owned_by": OWNER,
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
        ids = token_ids(prompt, self.vocab_size)
        if ids is not None:
            return [ids]
        if isinstance(prompt, list) and prompt:
            return [token_ids(p, self.vocab_size) or self._encode(p) for p in prompt]
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
            requested = optional_int(body, "max_completion_tokens", 1)
            if requested is None:
                requested = optional_int(body, "max_tokens", 1)
        else:
            prompts = self._completion_prompts(body)
            requested = optional_int(body, "max_tokens", 1)
            if "max_tokens" not in body:
                requested = COMPLETIONS_DEFAULT_MAX_TOKENS
        if body.get("n") not in (None, 1):
            raise bad_request("the simulated engine supports only n=1", "n")
        min_tokens = optional_int(body, "min_tokens", 0)
        if min_tokens is not None and requested is not None and min_tokens > requested:
            raise bad_request("min_tokens must be less than or equal to max_tokens", "min_tokens")
        optional_bool(body, "ignore_eos")
        stream = optional_bool(body, "stream")
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

    def _usage(
        self, gen: Generation, sims: Sequence[SimRequest], completion: int
    ) -> dict[str, Any]:
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
        response = web.StreamResponse(headers=SSE_HEADERS)
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
        chunks = Chunks(gen.chat, cid, created, self.model, gen.include_usage, len(sims))
        starts = [len(p) for p in gen.prompts]
        sent = [0] * len(sims)
        total = 0
        async with aclosing(engine_steps(sims)) as steps:
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
        tail.append(DONE)
        await response.write_eof(b"".join(tail))

    async def _fault_in_stream(
        self, request: web.Request, response: web.StreamResponse, chunks: Chunks, fault: Fault
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
            await response.write_eof(b"data: " + orjson.dumps(error.body()) + b"\n\n" + DONE)
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
        async with aclosing(engine_steps(sims)) as steps:
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
            choice["finish_reason"] = FINISH_REASON
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
            optional_bool(body, "add_special_tokens")
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


async def engine_steps(sims: Sequence[SimRequest]) -> AsyncGenerator[tuple[int, int]]:
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

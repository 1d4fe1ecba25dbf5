"""The streaming client against purpose-built loopback servers: records, bodies, timing, pooling."""

from __future__ import annotations

import asyncio
import itertools
import json
import pickle
import random
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from sse_server_helpers import (
    DONE,
    ScriptedServer,
    chat_event,
    completion_stream,
    plan,
    text_event,
    usage_event,
    write_stream,
)

from tmesh.bench.load.client import (
    ClientConfig,
    one_line,
    parse_retry_after,
    request_body,
    send_request,
)
from tmesh.bench.load.http import Pool
from tmesh.bench.load.stream import StreamState


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.close()


def config(**overrides: object) -> ClientConfig:
    settings_: dict[str, object] = {
        "base_url": "http://127.0.0.1:1/v1",
        "api": "completions",
        "model": "m",
        "headers": {},
        "max_tokens": 8,
        "request_timeout": 5.0,
    }
    settings_.update(overrides)
    return ClientConfig(**settings_)  # type: ignore[arg-type]


def random_split(data: bytes, parts: int, seed: int = 7) -> list[bytes]:
    cuts = sorted(random.Random(seed).sample(range(1, len(data)), parts))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


async def run_one(cfg: ClientConfig, origin: float = 0.0, index: int = 0) -> object:
    async with Pool(4) as pool:
        return await send_request(pool, cfg, plan(index), origin)


# ---- pure parts ----


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="api must be one of"):
        config(api="embeddings")
    with pytest.raises(ValueError, match="http"):
        config(base_url="ftp://x/v1")
    with pytest.raises(ValueError, match="line break"):
        config(headers={"X-Evil": "a\r\nHost: b"})
    with pytest.raises(ValueError, match="set by the client"):
        config(headers={"Content-Length": "5"})
    with pytest.raises(ValueError, match="request_timeout"):
        config(request_timeout=0)


def test_config_survives_pickling_for_worker_processes() -> None:
    cfg = config(base_url="https://h:8443/v1", api="chat", headers={"Authorization": "Bearer k"})
    copy = pickle.loads(pickle.dumps(cfg))
    assert copy == cfg
    assert request_body(copy, "p") == request_body(cfg, "p")
    assert copy._head == cfg._head and copy._target == ("h", 8443, True)


def test_completions_body_has_streaming_and_length_fields() -> None:
    body = orjson.loads(request_body(config(max_tokens=100), "ctx+q"))
    assert body == {
        "model": "m",
        "prompt": "ctx+q",
        "max_tokens": 100,
        "min_tokens": 100,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_chat_body_and_extra_body_overrides() -> None:
    cfg = config(
        api="chat", ignore_eos=False, extra_body={"temperature": 0, "stream_options": None}
    )
    body = orjson.loads(request_body(cfg, "hi"))
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert "prompt" not in body and "ignore_eos" not in body and "min_tokens" not in body
    assert body["temperature"] == 0 and "stream_options" not in body


def test_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    later = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    earlier = (now - timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after(later, now) == 30.0
    assert parse_retry_after(earlier, now) == 0.0
    assert parse_retry_after("-3", now) is None
    assert parse_retry_after("inf", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_one_line_masks_secrets_and_collapses_whitespace() -> None:
    assert one_line("bad key sk-12345678\n<b>x</b>", ("sk-12345678",)) == "bad key sk-1… <b>x</b>"
    assert len(one_line("y" * 500)) == 200


# ---- over loopback ----


async def test_completions_record_from_usage(server: ScriptedServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await write_stream(
            request, [*[text_event(f" w{i}") for i in range(4)], usage_event(40, 4, 32), DONE]
        )

    cfg = server.config("ok", handler, max_tokens=4)
    record = await run_one(cfg)
    assert record.ok, record.error_detail
    assert (record.index, record.context_id, record.question_id, record.visit, record.rotation) == (
        0,
        3,
        1,
        2,
        1,
    )
    assert record.status == 200
    assert record.usage_reported
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (40, 4, 32)
    assert record.t0 < record.t_first <= record.t_last <= record.t_end
    sent = server.bodies[0]
    assert sent["prompt"] == "Hello there. Why?"
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 4 and sent["min_tokens"] == 4 and sent["ignore_eos"] is True
    assert server.headers[0]["Accept-Encoding"] == "identity"


async def test_chat_reasoning_counts_as_generated_text(server: ScriptedServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        events = [
            chat_event(role="assistant", content=""),
            chat_event(reasoning_content="think"),
            chat_event(reasoning="more"),
            chat_event(content="answer", finish="stop"),
            DONE,
        ]
        return await write_stream(request, events, delays=[0, 0.05, 0.02, 0.02])

    record = await run_one(server.config("chat", handler, api="chat"))
    assert record.ok, record.error_detail
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "Hello there. Why?"}]
    assert not record.usage_reported
    assert record.completion_tokens == 3
    assert record.prompt_tokens == 5
    assert record.ttft >= 0.04
    assert record.decode_time >= 0.03


async def test_odd_splits_crlf_and_comments_give_the_same_record(server: ScriptedServer) -> None:
    stream = b"".join(completion_stream(6)).replace(b"\n", b"\r\n")
    stream = b": keep-alive\r\n\r\n" + stream.replace(b"data: [DONE]", b": ping\r\ndata:[DONE]")
    cr_stream = stream.replace(b"\r\n", b"\r")

    async def handler(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, random_split(stream, 25))

    async def cr_handler(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, random_split(cr_stream, 25))

    for name, handle in (("split", handler), ("cr", cr_handler)):
        record = await run_one(server.config(name, handle))
        assert record.ok, record.error_detail
        assert (record.completion_tokens, record.prompt_tokens) == (6, 11)


async def test_estimated_counts_without_usage(server: ScriptedServer) -> None:
    async def with_done(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, completion_stream(5, usage=False))

    async def without_done(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, completion_stream(5, usage=False)[:-1])

    for name, handle in (("done", with_done), ("nodone", without_done)):
        record = await run_one(server.config(name, handle))
        assert record.ok, record.error_detail
        assert not record.usage_reported
        assert (record.completion_tokens, record.prompt_tokens) == (5, 5)
        assert record.cached_tokens is None


async def test_ttft_measures_the_servers_first_token_delay(server: ScriptedServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, completion_stream(3), delays=[0.2])

    record = await run_one(server.config("delay", handler))
    assert record.ok, record.error_detail
    assert 0.19 <= record.ttft < 0.6


async def test_itl_uses_token_counts_not_chunk_counts(server: ScriptedServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        pieces = [text_event(" a b") for _ in range(10)] + [usage_event(7, 20), DONE]
        return await write_stream(request, pieces, delays=[0] + [0.02] * 9)

    record = await run_one(server.config("pairs", handler))
    assert record.ok, record.error_detail
    assert record.completion_tokens == 20
    assert record.itl == pytest.approx(record.decode_time / 19)
    assert 0.15 / 19 < record.itl < 1.0 / 19


async def test_large_prompt_and_long_sse_line(server: ScriptedServer) -> None:
    long_text = "x" * 3_000_000

    async def handler(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, [text_event(long_text), usage_event(32000, 1), DONE])

    prompt = "word " * 32000
    async with Pool(2) as pool:
        cfg = server.config("big", handler)
        record = await send_request(pool, cfg, plan(prompt=prompt), 0.0)
    assert record.ok, record.error_detail
    assert server.bodies[0]["prompt"] == prompt + "Why?"
    assert record.completion_tokens == 1


async def test_keep_alive_pool_reuses_connections_up_to_the_limit(server: ScriptedServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, completion_stream(2), delays=[0.01])

    cfg = server.config("pool", handler)
    async with Pool(3) as pool:
        for _ in range(3):
            records = await asyncio.gather(
                *(send_request(pool, cfg, plan(i), 0.0) for i in range(6))
            )
            assert all(r.ok for r in records)
    assert len(server.bodies) == 18
    assert len(server.peers) == 3


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder: Path = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_tls_is_verified_unless_insecure(tls_context: ssl.SSLContext) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, completion_stream(2))

    server = ScriptedServer(tls=tls_context)
    await server.start()
    try:
        cfg = server.config("tls", handler)
        async with Pool(1, insecure=True) as pool:
            accepted = await send_request(pool, cfg, plan(), 0.0)
        async with Pool(1) as pool:
            refused = await send_request(pool, cfg, plan(), 0.0)
    finally:
        await server.close()
    assert accepted.ok, accepted.error_detail
    assert refused.error == "connect"
    assert "CERTIFICATE_VERIFY_FAILED" in refused.error_detail


async def test_send_request_needs_a_pool() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TypeError, match="Pool"):
            await send_request(session, config(), plan(), 0.0)  # type: ignore[arg-type]


async def test_cancellation_propagates_and_frees_the_slot(server: ScriptedServer) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await server.release.wait()
        return web.Response()

    async def ok(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, completion_stream(2))

    async with Pool(1) as pool:
        task = asyncio.create_task(send_request(pool, server.config("stall", stall), plan(), 0))
        await server.arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        record = await send_request(pool, server.config("after", ok), plan(), 0.0)
    assert record.ok, record.error_detail


# ---- event decoding: the template fast path must equal a full decode of every event ----


def full_decode(payloads: list[bytes], chat: bool) -> tuple[int, bool, object, bool]:
    """The reference: decode every event and apply the metric rules literally."""
    events, finished, usage, done = 0, False, None, False
    for payload in payloads:
        if payload == b"[DONE]":
            done = True
            continue
        decoded = orjson.loads(payload)
        choices = decoded.get("choices")
        if choices:
            choice = choices[0]
            if chat:
                delta = choice.get("delta") or {}
                text = (
                    delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
                )
            else:
                text = choice.get("text")
            events += bool(text)
            finished = finished or bool(choice.get("finish_reason"))
        if decoded.get("usage"):
            usage = decoded["usage"]
    return events, finished, usage, done


def tally(payloads: list[bytes], chat: bool, reads: list[int]) -> StreamState:
    state = StreamState(chat)
    bounds = sorted({0, len(payloads), *(r for r in reads if r < len(payloads))})
    for a, b in itertools.pairwise(bounds):
        state.add(payloads[a:b], a + 1.0)
    return state


TEXTS = st.one_of(st.sampled_from(["", "a", " b", '"', "\\", "é", "\n"]), st.text(max_size=4))


@st.composite
def token_streams(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    chat = draw(st.booleans())
    spaced = draw(st.booleans())
    separators = (", ", ": ") if spaced else (",", ":")
    ascii_only = draw(st.booleans())
    payloads = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["text", "text", "text", "finish", "usage", "both", "extra"]))
        text = draw(TEXTS)
        finish = "length" if kind == "finish" else None
        if chat:
            delta = {"content": text}
            if kind == "both":
                delta["reasoning_content"] = draw(st.sampled_from(["", "r"]))
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        event = {"id": "x-1", "created": 5, "choices": [choice], "usage": None}
        if kind == "usage":
            event = {"id": "x-1", "choices": [], "usage": {"completion_tokens": 3}}
        if kind == "extra":
            event["choices"].append({"index": 1, "text": "y", "finish_reason": "stop"})
        payloads.append(json.dumps(event, separators=separators, ensure_ascii=ascii_only).encode())
    if draw(st.booleans()):
        payloads.append(b"[DONE]")
    return payloads, chat


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(case=token_streams(), reads=st.lists(st.integers(0, 14), max_size=5))
def test_stream_state_equals_decoding_every_event(
    case: tuple[list[bytes], bool], reads: list[int]
) -> None:
    payloads, chat = case
    state = tally(payloads, chat, reads)
    assert (state.events, state.finished, state.usage, bool(state.done_at)) == full_decode(
        payloads, chat
    )


def test_template_is_learned_and_a_look_alike_event_is_decoded_in_full() -> None:
    def payload(choices: str) -> bytes:
        return b'{"id":"c","choices":[' + choices.encode() + b'],"usage":null}'

    events = [payload('{"text":"a","finish_reason":null}') for _ in range(3)]
    look_alike = payload('{"text":"b","finish_reason":"stop"},{"text":"c","finish_reason":null}')
    state = StreamState(chat=False)
    state.add(events, 1.0)
    assert state._prefix == b'{"id":"c","choices":[{"text":'
    state.add([look_alike], 2.0)
    assert (state.events, state.finished, state.t_first, state.t_last) == (4, True, 1.0, 2.0)


def test_template_slot_is_proved_to_be_the_text_field() -> None:
    first = b'{"id":"text","x":"a","choices":[{"text":"a"}]}'
    second = b'{"id":"text","x":"","choices":[{"text":"a"}]}'
    state = StreamState(chat=False)
    state.add([first, second], 1.0)
    assert state.events == 2

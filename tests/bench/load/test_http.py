"""The HTTP layer on its own: response framing on any split of the bytes, and the pool's limit."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sse_server_helpers import plan

from tmesh.bench.load.client import ClientConfig, send_request
from tmesh.bench.load.http import Origin, Pool, ResponseParser, request_head, split_url


def head_of(raw: bytes) -> ResponseParser:
    parser = ResponseParser()
    got_head, pieces, _ = parser.feed(raw)
    assert got_head and not pieces
    return parser


def test_response_head() -> None:
    parser = head_of(
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nX-A: 1\r\nx-a: 2\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert (parser.status, parser.reason, parser.keep_alive) == (429, "Too Many Requests", True)
    assert parser.headers == {"retry-after": "3", "x-a": "1, 2", "content-length": "0"}
    assert not head_of(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert not head_of(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive
    with pytest.raises(ValueError, match="status line"):
        ResponseParser().feed(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    with pytest.raises(ValueError, match="64 KiB"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 70_000)


def test_informational_heads_are_skipped_and_bodies_framed_three_ways() -> None:
    parser = ResponseParser()
    got_head, pieces, ended = parser.feed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"
    )
    assert (got_head, pieces, ended, parser.status) == (True, [b"ab"], False, 200)
    assert parser.feed(b"cde") == (False, [b"cde"], True)
    assert not parser.leftover and not parser.until_close
    sized = ResponseParser()
    assert sized.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK")[2]
    assert sized.leftover
    close = ResponseParser()
    assert close.feed(b"HTTP/1.0 200 OK\r\n\r\nsome") == (True, [b"some"], False)
    assert close.until_close and not close.keep_alive


def chunked(pieces: list[bytes], extension: bool, trailer: bool) -> bytes:
    ext = b";ext=1" if extension else b""
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in pieces)
    return body + (b"0\r\nT: 1\r\n\r\n" if trailer else b"0\r\n\r\n")


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNK_DATA = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.sampled_from([b"\r\n", b"a\r\nb", b"0\r\n", b"\r\n\r\n", b"data: x\n\n"]),
)


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(
    pieces=st.lists(CHUNK_DATA, max_size=8),
    cuts=st.lists(st.integers(0, 600), max_size=10),
    extension=st.booleans(),
    trailer=st.booleans(),
    tail=st.sampled_from([b"", b"NEXT", b"5\r\nhello\r\n", b"HTTP/1.1 200 OK\r\n"]),
)
def test_chunked_body_any_split_gives_the_same_body(
    pieces: list[bytes], cuts: list[int], extension: bool, trailer: bool, tail: bytes
) -> None:
    wire = CHUNKED_HEAD + chunked(pieces, extension, trailer) + tail
    bounds = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    parser = ResponseParser()
    out: list[bytes] = []
    ended = False
    for a, b in itertools.pairwise(bounds):
        assert not ended
        _, got, ended = parser.feed(wire[a:b])
        out += got
        if ended:
            # Bytes after the end make the connection untrustworthy when they came in that read.
            assert parser.leftover == (b > len(wire) - len(tail))
            break
    assert ended
    assert b"".join(out) == b"".join(pieces)


def test_chunked_body_rejects_bad_framing() -> None:
    with pytest.raises(ValueError):
        ResponseParser().feed(CHUNKED_HEAD + b"zz\r\nabc")
    with pytest.raises(ValueError):
        ResponseParser().feed(CHUNKED_HEAD + b"3\r\nabcXY")


def test_split_url_and_request_head() -> None:
    assert split_url("https://u:p@h:8443/x/v1") == (Origin("h", 8443, True), "/x/v1", "h:8443")
    assert split_url("http://h/v1")[0] == Origin("h", 80, False)
    with pytest.raises(ValueError, match="http"):
        split_url("ftp://h/v1")
    head = request_head("POST", "/v1/completions", "h", [("Accept", "text/event-stream")])
    assert head == (
        b"POST /v1/completions HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\nContent-Length: "
    )
    with pytest.raises(ValueError, match="Latin-1"):
        request_head("POST", "/", "h", [("X-Name", "\u2603")])


@pytest.fixture
async def silent_origin() -> AsyncIterator[Origin]:
    """A loopback server that accepts connections and never answers."""
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    yield Origin("127.0.0.1", server.sockets[0].getsockname()[1], False)
    server.close()


async def test_pool_holds_at_most_its_limit_and_hands_over_on_release(
    silent_origin: Origin,
) -> None:
    async with Pool(1) as pool:
        first = await pool.acquire(silent_origin, 5.0)
        waiting = asyncio.create_task(pool.acquire(silent_origin, 5.0))
        await asyncio.sleep(0)
        assert not waiting.done() and pool.open == 1
        pool.release(first)
        assert await waiting is first
        pool.release(first)
    assert pool.open == 0
    assert first.transport is None or first.transport.is_closing()


async def test_a_closed_pool_fails_requests_as_connect_errors(silent_origin: Origin) -> None:
    pool = Pool(1)
    pool.close()
    config = ClientConfig(
        base_url=f"http://{silent_origin.host}:{silent_origin.port}/v1",
        api="completions",
        model="m",
        headers={},
        max_tokens=4,
        request_timeout=5.0,
    )
    record = await send_request(pool, config, plan(), 0.0)
    assert record.error == "connect" and "closed" in (record.error_detail or "")

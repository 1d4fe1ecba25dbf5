"""Counting tokens with the server: its `/tokenize` in whichever dialect it speaks, a calibration
from `usage` when it has none, and the tokens it adds to every request; and the chain that picks
the best oracle.

An answer is trusted only when it is plausible. A server that does not know a dialect often
answers it anyway (llama.cpp answers vLLM's `{"prompt": …}` with 200 and no tokens), and a slow
server times out now and then: a wrong or failed answer must make tmesh try again or try another
way, never conclude something about the tokenizer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import aiohttp
import orjson

from tmesh.bench.endpoint.dialects import TOKENIZE_DIALECTS, TokenizeDialect, token_count
from tmesh.bench.endpoint.openai import generation_body, route, tokenize_url, with_prompt
from tmesh.bench.workload.tokens import (
    CalibratedEstimate,
    LengthEstimate,
    LocalTokenizer,
    TokenizerError,
    TokenOracle,
    fit_line,
)
from tmesh.bench.workload.words import prose
from tmesh.results.records import Api
from tmesh.text import one_line

PROBE_TIMEOUT_S = 15.0
TOKENIZE_CONCURRENCY = 16
CALIBRATION_SIZES = (40, 400, 1600)
ATTEMPTS = 4
RETRY_START_S = 0.5
PLAUSIBLE_PER_WORD = (0.2, 10.0)
ADDITIVE_SLACK = 3
MAX_OVERHEAD = 4096
PROBE_SHORT = "Hello world, the quick brown fox jumps over the lazy dog."


class TransientError(TokenizerError):
    """A failure that may pass: a timeout, a refused or reset connection, a 5xx or a 429."""


class ServerTokenizer:
    """Exact counts from the server's `/tokenize` in one dialect: one POST per text, concurrently
    (vLLM's endpoint takes one prompt per call), each retried a few times when it fails in a way
    that may pass."""

    exact = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        model: str,
        headers: dict[str, str],
        dialect: TokenizeDialect = TOKENIZE_DIALECTS[0],
        timeout: float = 60.0,
    ) -> None:
        self._session = session
        self._url = url
        self._model = model
        self._headers = headers
        self.dialect = dialect
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(TOKENIZE_CONCURRENCY)
        self.name = f"server {url} ({dialect.server} dialect)"

    async def count(self, texts: list[str]) -> list[int]:
        return list(await asyncio.gather(*(self._count_one(text) for text in texts)))

    async def _count_one(self, text: str) -> int:
        payload = self.dialect.body(self._model, text)
        pause = RETRY_START_S
        for attempt in range(ATTEMPTS):
            try:
                async with self._limit:
                    body = await post_json(
                        self._session, self._url, payload, self._headers, self._timeout
                    )
                break
            except TransientError:
                if attempt == ATTEMPTS - 1:
                    raise
                await asyncio.sleep(pause)
                pause *= 2
        try:
            count = token_count(orjson.loads(body))
        except orjson.JSONDecodeError:
            raise TokenizerError(f"{self._url}: the answer is not JSON") from None
        if count is None:
            raise TokenizerError(f"{self._url}: the answer has no token count")
        return count


async def find_server_tokenizer(
    session: aiohttp.ClientSession,
    base_url: str,
    model: str,
    headers: dict[str, str],
    timeout: float = PROBE_TIMEOUT_S,
) -> tuple[ServerTokenizer | None, list[str]]:
    """The first `/tokenize` dialect whose answers are plausible, and why the others were not.

    A dialect must count a short and a long text as a tokenizer would: more than zero tokens,
    a plausible number per word, and the two together about the sum of each. A 404 (no
    `/tokenize` at all) or a failure that outlasted its retries (the server does not answer
    there) ends the search: every dialect uses the same route.
    """
    url = tokenize_url(base_url)
    passed_over: list[str] = []
    for dialect in TOKENIZE_DIALECTS:
        candidate = ServerTokenizer(session, url, model, headers, dialect, timeout)
        final = False
        try:
            problem = await _implausible(candidate)
        except TokenizerError as exc:
            problem = str(exc)
            final = isinstance(exc, TransientError) or problem.endswith(("HTTP 404", "HTTP 405"))
        if problem is None:
            return candidate, passed_over
        passed_over.append(f"{dialect.server} dialect: {problem}")
        if final:
            break
    return None, passed_over


async def _implausible(oracle: ServerTokenizer) -> str | None:
    """Why the counts of `oracle` cannot be a tokenizer's, or None if they can."""
    long_text = prose(random.Random("tmesh-dialect"), 200)
    short, long, both = await oracle.count([PROBE_SHORT, long_text, PROBE_SHORT + " " + long_text])
    if short <= 0 or long <= 0:
        return "it counts 0 tokens in a non-empty text"
    per_word = long / len(long_text.split())
    low, high = PLAUSIBLE_PER_WORD
    if not low <= per_word <= high:
        return f"it counts an implausible {per_word:.2f} tokens per word"
    if abs(both - short - long) > ADDITIVE_SLACK:
        return f"two texts together count {both}, apart {short} + {long}"
    return None


async def choose_oracle(
    session: aiohttp.ClientSession,
    base_url: str,
    model: str,
    api: Api,
    headers: dict[str, str],
    tokenizer: str | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    timeout: float = PROBE_TIMEOUT_S,
) -> TokenOracle:
    """The first oracle that works: `--tokenizer`, the server's `/tokenize` (in its own dialect),
    a calibration from `usage.prompt_tokens`, an estimate. `progress` hears which one was chosen
    and why others were passed over.

    An explicit `--tokenizer` that cannot be used is an error, not a silent fallback: the user
    asked for exact counts from that file.
    """
    say = progress or (lambda _text: None)
    if tokenizer is not None:
        return LocalTokenizer(tokenizer)
    server, passed_over = await find_server_tokenizer(session, base_url, model, headers, timeout)
    why = f" (passed over: {'; '.join(passed_over)})" if passed_over else ""
    if server is not None:
        say(f"token counts: {server.name}{why}")
        return server
    say(f"no usable server /tokenize{why}; calibrating from usage.prompt_tokens")
    try:
        return await calibrate(session, base_url, model, api, headers, timeout)
    except TokenizerError as exc:
        say(f"calibration failed ({exc}); token counts are an estimate")
    return LengthEstimate()


async def calibrate(
    session: aiohttp.ClientSession,
    base_url: str,
    model: str,
    api: Api,
    headers: dict[str, str],
    timeout: float = PROBE_TIMEOUT_S,
) -> CalibratedEstimate:
    """Fit tokens per word from `max_tokens=1` requests of prose of a few lengths."""
    rng = random.Random("tmesh-calibration")
    texts = [prose(rng, size) for size in CALIBRATION_SIZES]
    tokens = [
        await prompt_tokens(session, base_url, model, api, headers, text, timeout) for text in texts
    ]
    per_word, overhead = fit_line([len(text.split()) for text in texts], tokens)
    low, high = PLAUSIBLE_PER_WORD
    if not low <= per_word <= high:
        raise TokenizerError(f"implausible fit of {per_word:.3f} tokens per word")
    return CalibratedEstimate(per_word, overhead, len(texts))


async def request_overhead(
    session: aiohttp.ClientSession,
    base_url: str,
    model: str,
    api: Api,
    headers: dict[str, str],
    oracle: TokenOracle,
    timeout: float = PROBE_TIMEOUT_S,
) -> int | None:
    """Tokens the server adds to every request around the text it is sent: a BOS token, and for
    chat the template's role markers. Measured once (the server's `usage.prompt_tokens` of a
    probe minus the oracle's count of its text), so each plan states what the server will count.
    None when the server reports no usage or the difference is not plausible."""
    text = prose(random.Random("tmesh-overhead"), 60)
    try:
        reported = await prompt_tokens(session, base_url, model, api, headers, text, timeout)
    except TokenizerError:
        return None
    (counted,) = await oracle.count([text])
    overhead = reported - counted
    return overhead if 0 <= overhead <= MAX_OVERHEAD else None


async def prompt_tokens(
    session: aiohttp.ClientSession,
    base_url: str,
    model: str,
    api: Api,
    headers: dict[str, str],
    text: str,
    timeout: float,
) -> int:
    """`usage.prompt_tokens` of a one-token, non-streamed request carrying `text`."""
    url = base_url + route(api)
    request = with_prompt(generation_body(api, model, 1, stream=False, ignore_eos=False), api, text)
    request["temperature"] = 0
    body = await post_json(session, url, request, headers, aiohttp.ClientTimeout(total=timeout))
    try:
        value = orjson.loads(body)["usage"]["prompt_tokens"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise TokenizerError(f"{url}: no usage.prompt_tokens in the answer") from exc
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise TokenizerError(f"{url}: usage.prompt_tokens is {value!r}")
    return value


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, object],
    headers: dict[str, str],
    timeout: aiohttp.ClientTimeout,
) -> bytes:
    """The body of a 200 answer; any other outcome is a one-line `TokenizerError`, a
    `TransientError` when it may pass (a timeout, a failed connection, 429, 5xx)."""
    try:
        async with session.post(
            url,
            data=orjson.dumps(payload),
            headers={**headers, "Content-Type": "application/json"},
            timeout=timeout,
        ) as resp:
            body = await resp.read()
            status = resp.status
    except asyncio.TimeoutError:
        raise TransientError(f"{url}: timed out") from None
    except aiohttp.ClientConnectorError as exc:
        raise TransientError(f"{url}: cannot connect ({one_line(str(exc.os_error))})") from None
    except aiohttp.ClientError as exc:
        raise TransientError(f"{url}: {one_line(str(exc)) or type(exc).__name__}") from None
    if status == 429 or status >= 500:
        raise TransientError(f"{url}: HTTP {status}")
    if status != 200:
        raise TokenizerError(f"{url}: HTTP {status}")
    return body

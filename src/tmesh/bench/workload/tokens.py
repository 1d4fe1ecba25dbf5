"""Token counting oracles: how the benchmark knows how many tokens a text is for the served model.

Prompts must be an exact number of tokens under the *server's* tokenizer, so the best oracle is the
one closest to it. The chain, first that works: a local `tokenizer.json` the user names
(`--tokenizer`), the server's own `/tokenize` (vLLM, SGLang), a linear fit to `usage.prompt_tokens`
of a few probe requests, and finally a length estimate. Only the first two are exact; the others
are flagged so the output never claims precision it does not have.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiohttp
import orjson

from tmesh.bench.endpoint.openai import generation_body, route, tokenize_url, with_prompt
from tmesh.bench.workload.words import prose
from tmesh.results.records import Api
from tmesh.text import one_line

PROBE_TIMEOUT_S = 15.0
TOKENIZE_CONCURRENCY = 16
BATCH_CHARS = 400_000
CALIBRATION_SIZES = (40, 400, 1600)
PUNCTUATION = ".,;:!?"


class TokenizerError(Exception):
    """A token counter that was asked for (or chosen) cannot be used; the message is one line."""


@runtime_checkable
class TokenOracle(Protocol):
    """Counts the tokens of texts as the served model would, without special tokens."""

    name: str
    exact: bool

    async def count(self, texts: list[str]) -> list[int]: ...


class LocalTokenizer:
    """Exact counts from a local Hugging Face `tokenizer.json` (optional `tokenizers` library)."""

    exact = True

    def __init__(self, source: str) -> None:
        path = resolve_tokenizer_file(source)
        tokenizers = _import_tokenizers()
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:
            raise TokenizerError(
                f"--tokenizer {path}: cannot load it: {one_line(str(exc))}"
            ) from exc
        # A tokenizer.json may carry training-time truncation or padding: both falsify counts.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        self.name = f"tokenizer {path}"

    async def count(self, texts: list[str]) -> list[int]:
        # The Rust encoder releases the GIL and runs the batch in parallel; a thread keeps the
        # event loop (progress output, signals) responsive meanwhile.
        return await asyncio.to_thread(self.count_now, texts)

    def count_now(self, texts: list[str]) -> list[int]:
        """Counts in sub-batches of about BATCH_CHARS characters (two 32k-token contexts).

        Encoding one such context takes ~20 MB of scratch memory in its worker thread, which the
        allocator keeps afterwards; a large batch would spread over every core and keep that much
        per core, so batches stay small enough to occupy two workers at a time.
        """
        counts: list[int] = []
        start = 0
        while start < len(texts):
            end, size = start, 0
            while end < len(texts) and (end == start or size + len(texts[end]) <= BATCH_CHARS):
                size += len(texts[end])
                end += 1
            encodings = self._encode(texts[start:end], add_special_tokens=False)
            counts.extend(len(enc.ids) for enc in encodings)
            start = end
        return counts


class ServerTokenizer:
    """Exact counts from the server's `/tokenize` (vLLM, SGLang): one POST per text, concurrently.

    vLLM's endpoint takes one prompt per call, so a batch becomes parallel calls bounded by a
    semaphore rather than one request per text in sequence.
    """

    exact = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        model: str,
        headers: dict[str, str],
        timeout: float = 60.0,
    ) -> None:
        self._session = session
        self._url = url
        self._model = model
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(TOKENIZE_CONCURRENCY)
        self.name = f"server {url}"

    async def count(self, texts: list[str]) -> list[int]:
        return list(await asyncio.gather(*(self._count_one(text) for text in texts)))

    async def _count_one(self, text: str) -> int:
        payload = {"model": self._model, "prompt": text, "add_special_tokens": False}
        async with self._limit:
            body = await _post_json(self._session, self._url, payload, self._headers, self._timeout)
        return _parse_tokenize(body, self._url)


class CalibratedEstimate:
    """Approximate counts from a fit tokens = per_word * words + overhead to `usage.prompt_tokens`.

    The intercept of the fit (BOS, chat template) is kept apart as `overhead`: it belongs to each
    request, not to each text, so adding it to every count would double it for context + question.
    """

    exact = False

    def __init__(self, per_word: float, overhead: float, probes: int) -> None:
        self.per_word = per_word
        self.overhead = overhead
        self.name = (
            f"calibration from usage.prompt_tokens ({probes} probes, {per_word:.3f} tokens/word)"
        )

    async def count(self, texts: list[str]) -> list[int]:
        return [round(self.per_word * len(text.split())) for text in texts]


class LengthEstimate:
    """The last resort: one token per word or punctuation mark, plus one per 4 surplus characters.

    A plain characters/4 rule overcounts prose made of common words by about half (they average
    six characters with the space and are single tokens), so characters only count beyond that.
    """

    name = "estimate from words and characters (no tokenizer available)"
    exact = False

    async def count(self, texts: list[str]) -> list[int]:
        return [estimate_tokens(text) for text in texts]


def estimate_tokens(text: str) -> int:
    pieces = len(text.split()) + sum(text.count(mark) for mark in PUNCTUATION)
    surplus = len(text) - 6 * pieces
    return pieces + max(0, math.ceil(surplus / 4))


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
    """The first oracle of the chain that works; `progress` hears why others were passed over.

    An explicit `--tokenizer` that cannot be used is an error, not a silent fallback: the user asked
    for exact counts from that file.
    """
    say = progress or (lambda _text: None)
    if tokenizer is not None:
        return LocalTokenizer(tokenizer)
    url = tokenize_url(base_url)
    try:
        await ServerTokenizer(session, url, model, headers, timeout).count(["Hello world"])
        return ServerTokenizer(session, url, model, headers)
    except TokenizerError as exc:
        say(f"no server /tokenize ({exc}); calibrating from usage.prompt_tokens")
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
        await _prompt_tokens(session, base_url, model, api, headers, text, timeout)
        for text in texts
    ]
    per_word, overhead = fit_line([len(text.split()) for text in texts], tokens)
    if not 0.2 <= per_word <= 10.0:
        raise TokenizerError(f"implausible fit of {per_word:.3f} tokens per word")
    return CalibratedEstimate(per_word, overhead, len(texts))


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        raise TokenizerError("calibration needs probes of different lengths")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var
    return slope, mean_y - slope * mean_x


async def _prompt_tokens(
    session: aiohttp.ClientSession,
    base_url: str,
    model: str,
    api: Api,
    headers: dict[str, str],
    text: str,
    timeout: float,
) -> int:
    url = base_url + route(api)
    request = with_prompt(generation_body(api, model, 1, stream=False, ignore_eos=False), api, text)
    request["temperature"] = 0
    body = await _post_json(session, url, request, headers, aiohttp.ClientTimeout(total=timeout))
    try:
        usage = orjson.loads(body)["usage"]
        value = usage["prompt_tokens"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise TokenizerError(f"{url}: no usage.prompt_tokens in the answer") from exc
    if not isinstance(value, int) or value <= 0:
        raise TokenizerError(f"{url}: usage.prompt_tokens is {value!r}")
    return value


async def _post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    timeout: aiohttp.ClientTimeout,
) -> bytes:
    """The body of a 200 answer; a network failure or any other status is a one-line error."""
    try:
        async with session.post(
            url,
            data=orjson.dumps(payload),
            headers={**headers, "Content-Type": "application/json"},
            timeout=timeout,
        ) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise TokenizerError(f"{url}: {_describe(exc)}") from exc
    if status != 200:
        raise TokenizerError(f"{url}: HTTP {status}")
    return body


def _parse_tokenize(body: bytes, url: str) -> int:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TokenizerError(f"{url}: answer is not JSON") from exc
    if isinstance(answer, dict):
        count = answer.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
        tokens = answer.get("tokens")
        if isinstance(tokens, list):
            return len(tokens)
    raise TokenizerError(f"{url}: answer has neither 'count' nor 'tokens'")


def resolve_tokenizer_file(source: str) -> Path:
    """`--tokenizer` as a file, a folder holding `tokenizer.json`, or a model already in the local
    Hugging Face cache. Nothing is ever downloaded: a benchmark must not fetch from a hub.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / "tokenizer.json"
        if candidate.is_file():
            return candidate
        raise TokenizerError(f"--tokenizer {source}: the folder has no tokenizer.json")
    cached = _cached_tokenizer(source)
    if cached is not None:
        return cached
    raise TokenizerError(
        f"--tokenizer {source}: no such file or folder, and not in the local Hugging Face cache "
        "(tmesh never downloads tokenizers; pass the path of a tokenizer.json)"
    )


def _cached_tokenizer(name: str) -> Path | None:
    """`org/name` in the hub cache layout (`models--org--name/snapshots/<rev>/tokenizer.json`)."""
    if name.count("/") != 1 or name.startswith(("/", ".", "~")):
        return None
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub"
    )
    repo = Path(hub) / ("models--" + name.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        pinned = repo / "snapshots" / ref.read_text().strip() / "tokenizer.json"
        if pinned.is_file():
            return pinned
    found = sorted(repo.glob("snapshots/*/tokenizer.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _import_tokenizers() -> Any:
    try:
        return importlib.import_module("tokenizers")
    except ImportError as exc:
        raise TokenizerError(
            "--tokenizer needs the optional 'tokenizers' package "
            "(pip install 'tmesh-bench[tokenizers]')"
        ) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({one_line(str(exc.os_error))})"
    return one_line(str(exc)) or type(exc).__name__

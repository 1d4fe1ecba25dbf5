"""Token counting oracles: how the benchmark knows how many tokens a text is for the served model.

Prompts must be an exact number of tokens under the *server's* tokenizer, so the best oracle is the
one closest to it: a local `tokenizer.json` the user names (`--tokenizer`), the server's own
`/tokenize`, a linear fit to `usage.prompt_tokens` of a few probe requests, and finally a length
estimate. Only the first two are exact; the others are flagged so the output never claims
precision it does not have. This module holds the oracles that need no server; `counting` asks
the server and chooses.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from tokenizers import Tokenizer

from tmesh.text import one_line

BATCH_CHARS = 400_000
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
    """Exact counts from a local Hugging Face `tokenizer.json` (the `tokenizers` library)."""

    exact = True

    def __init__(self, source: str) -> None:
        path = resolve_tokenizer_file(source)
        try:
            tokenizer = Tokenizer.from_file(str(path))
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


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        raise TokenizerError("calibration needs probes of different lengths")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var
    return slope, mean_y - slope * mean_x


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

"""A deterministic, prefix-stable pseudo-tokenizer for the simulated engine.

Text is split into pieces: a word with its leading whitespace (" word"), a punctuation character
with its leading whitespace (","), or trailing whitespace. Each piece is exactly one token whose id
is a stable 64-bit BLAKE2b digest of the piece modulo the vocabulary, so the same text gives the
same ids in every process, and two texts sharing a prefix that ends at a piece boundary share the
token prefix (which is what prefix caching keys on).

The benchmark re-sends the same 32k-token contexts with different questions appended, so encoding
is memoised per *chunk*: the text is cut at content-defined points (the first whitespace after a
non-whitespace character at least CHUNK_CHARS after the previous cut). A cut depends only on the
text before it and never splits a piece, so a re-sent context hits the memo for every chunk but
the one where the question starts.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_CUT = re.compile(r"(?<=\S)\s")
CHUNK_CHARS = 4096
_MAX_PIECES = 1_000_000

# A harmony-like chat template: role markers around each message, then the assistant header.
_MESSAGE = "<|start|>{role}<|message|>{content}<|end|>"
_GENERATION_PROMPT = "<|start|>assistant<|message|>"


class SimTokenizer:
    """Encode text to token ids; memoised so re-sent long prompts cost little CPU."""

    def __init__(self, vocab_size: int = 201088, memo_chunks: int = 4096) -> None:
        self.vocab_size = vocab_size
        self._memo_chunks = memo_chunks
        self._chunks: OrderedDict[bytes, tuple[int, ...]] = OrderedDict()
        self._pieces: dict[str, int] = {}
        self.chunk_hits = 0
        self.chunk_misses = 0

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for chunk in _chunks(text):
            ids.extend(self._encode_chunk(chunk))
        return ids

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def render_chat(self, messages: Sequence[Mapping[str, object]]) -> str:
        """One prompt string from chat messages with a fixed template.

        Earlier messages render identically whatever follows them, so a conversation that
        shares its first user message with another shares a token prefix.
        """
        parts = [_MESSAGE.format(role=_role(m), content=_content(m)) for m in messages]
        return "".join(parts) + _GENERATION_PROMPT

    def _encode_chunk(self, chunk: str) -> tuple[int, ...]:
        key = hashlib.blake2b(chunk.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        ids = self._chunks.get(key)
        if ids is not None:
            self._chunks.move_to_end(key)
            self.chunk_hits += 1
            return ids
        self.chunk_misses += 1
        ids = tuple(self._piece_id(p) for p in _PIECE.findall(chunk))
        self._chunks[key] = ids
        if len(self._chunks) > self._memo_chunks:
            self._chunks.popitem(last=False)
        return ids

    def _piece_id(self, piece: str) -> int:
        token = self._pieces.get(piece)
        if token is None:
            if len(self._pieces) >= _MAX_PIECES:
                self._pieces.clear()
            digest = hashlib.blake2b(piece.encode("utf-8", "surrogatepass"), digest_size=8)
            token = int.from_bytes(digest.digest(), "little") % self.vocab_size
            self._pieces[piece] = token
        return token


def _chunks(text: str) -> list[str]:
    """Cut text at content-defined piece boundaries (see module docstring)."""
    out = []
    start = 0
    while len(text) - start > CHUNK_CHARS:
        cut = _CUT.search(text, start + CHUNK_CHARS)
        if cut is None:
            break
        out.append(text[start : cut.start()])
        start = cut.start()
    out.append(text[start:])
    return out


def _role(message: Mapping[str, object]) -> str:
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise ValueError("each message needs a string 'role'")
    return role


def _content(message: Mapping[str, object]) -> str:
    """Message text: a string, None (e.g. tool-call turns) or OpenAI's list of text parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or not isinstance(part.get("text"), str):
                raise ValueError("message content parts must be objects with a string 'text'")
            texts.append(part["text"])
        return "\n".join(texts)
    raise ValueError("message 'content' must be a string or a list of text parts")

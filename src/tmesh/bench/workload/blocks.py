"""The text of every block of a trace: exactly its number of tokens, the same in every request.

A trace names its prompts' blocks by id; replay turns each (id, length) into one fixed text of
exactly that many tokens, so a prompt is its blocks' texts joined: exactly `input_length` tokens,
sharing exactly the prefix its ids say. Each block opens with a one-token word that differs from
its siblings' (the blocks that follow the same parent), so two requests that part ways at a block
part ways at its first token, even on a cache that matches single tokens.

Texts are planned from the vocabulary's piece costs (`filler`), which add up across pieces. Two
places can break that sum: the start of the text (a tokenizer may treat it apart) and the seam
between two blocks. The first blocks are measured alone and resized by what the start adds; then
whole prompts are counted, and a prompt that is off is searched block by block for the first seam
that breaks the sum, whose block is written anew.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tmesh.bench.workload.filler import Writer
from tmesh.bench.workload.tokens import TokenOracle
from tmesh.bench.workload.vocabulary import Vocabulary

BlockKey = tuple[int, int]
"""A block: its id in the trace and its length in tokens (a partial last block is its own)."""
VERIFY_TOKENS = 2_000_000
"""Prompt tokens counted whole to check the blocks add up (the first prompts of the replay)."""
START_PROBES = 8
MAX_ROUNDS = 4


class BlockError(ValueError):
    """Blocks that cannot be written with this tokenizer's pieces; the message is one line."""


@dataclass
class BlockBook:
    """Every block's text; `exact` when an exact oracle confirmed the prompts it counted."""

    texts: dict[BlockKey, str]
    exact: bool
    checked: int = 0
    """Prompts counted whole with the oracle."""
    off: int = 0
    """Of those, prompts still not exactly their length after the last rewrite."""

    def prompt(self, keys: Iterable[BlockKey]) -> str:
        return "".join([self.texts[key] for key in keys])


def prompt_blocks(hash_ids: Sequence[int], input_length: int, block_size: int) -> list[BlockKey]:
    """The blocks of one request: full blocks, then the last one with what remains."""
    last = input_length - (len(hash_ids) - 1) * block_size
    return [(i, block_size) for i in hash_ids[:-1]] + [(hash_ids[-1], last)]


class _Planner:
    """Writes block texts to a budget, each block's first word chosen among one-token words."""

    def __init__(self, vocab: Vocabulary, seed: int, prompts: list[list[BlockKey]]) -> None:
        self.writer = Writer(vocab)
        self.vocab = vocab
        self.seed = seed
        self.leads = [w for w in vocab.words if vocab.cost[w] == 1] or list(vocab.words)
        self.rank: dict[BlockKey, int] = {}
        children: dict[BlockKey | None, int] = {}
        for keys in prompts:
            for parent, key in zip([None, *keys], keys, strict=False):
                if key not in self.rank:
                    self.rank[key] = children.get(parent, 0)
                    children[parent] = self.rank[key] + 1

    def units(self, tokens: int) -> int:
        return max(1, round(tokens / self.vocab.unit_tokens))

    def write(self, key: BlockKey, units: int, attempt: int = 0) -> str:
        rng = random.Random(f"tmesh-block:{self.seed}:{key[0]}:{key[1]}:{attempt}")
        lead = self.leads[(self.rank.get(key, 0) + attempt) % len(self.leads)]
        left = units - self.vocab.cost[lead]
        body = self.writer.write(rng, left) if left > 0 else None
        text = body.text if body is not None else self.writer.exact_words(rng, left)
        if text is None:
            raise BlockError(
                f"no text of {units} tokens can be written with this tokenizer's pieces "
                f"(block {key[0]})"
            )
        return lead + text


async def build_blocks(
    prompts: list[list[BlockKey]],
    oracle: TokenOracle,
    vocab: Vocabulary,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> BlockBook:
    """The text of every block of `prompts` (each a list of blocks, in replay order)."""
    say = progress or (lambda _text: None)
    planner = _Planner(vocab, seed, prompts)
    firsts = {keys[0] for keys in prompts if keys}
    start = await _start_offset(planner, sorted(firsts), oracle) if vocab.exact else 0
    texts: dict[BlockKey, str] = {}
    for keys in prompts:
        for position, key in enumerate(keys):
            if key not in texts:
                shift = start if position == 0 and key in firsts else 0
                texts[key] = planner.write(key, planner.units(key[1]) - shift)
    book = BlockBook(texts, exact=vocab.exact)
    if vocab.exact:
        say(f"checking that the blocks of {len(prompts)} prompts add up (token counts)…")
        await _check(book, planner, _sample(prompts), oracle, start)
    return book


async def _start_offset(planner: _Planner, firsts: list[BlockKey], oracle: TokenOracle) -> int:
    """What the start of a text adds to a block's planned cost (0 for most tokenizers): the
    most common difference over a few first blocks counted alone."""
    probes = firsts[:START_PROBES]
    if not probes:
        return 0
    texts = [planner.write(key, planner.units(key[1])) for key in probes]
    counts = await oracle.count(texts)
    differences = Counter(count - key[1] for count, key in zip(counts, probes, strict=True))
    return differences.most_common(1)[0][0]


def _sample(prompts: list[list[BlockKey]]) -> list[list[BlockKey]]:
    """Distinct prompts from the start of the replay, up to `VERIFY_TOKENS` tokens."""
    chosen: list[list[BlockKey]] = []
    seen: set[tuple[BlockKey, ...]] = set()
    total = 0
    for keys in prompts:
        size = sum(tokens for _, tokens in keys)
        if tuple(keys) in seen or (chosen and total + size > VERIFY_TOKENS):
            continue
        seen.add(tuple(keys))
        chosen.append(keys)
        total += size
    return chosen


async def _check(
    book: BlockBook, planner: _Planner, prompts: list[list[BlockKey]], oracle: TokenOracle,
    start: int,
) -> None:  # fmt: skip
    """Count whole prompts; rewrite the first block that breaks the sum in each that is off."""
    attempts: Counter[BlockKey] = Counter()
    pending = await _off(book, prompts, oracle)
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        changed = set()
        for keys in pending:
            position = await _first_break(book, keys, oracle)
            key = keys[position]
            attempts[key] += 1
            shift = start if position == 0 else 0
            book.texts[key] = planner.write(key, planner.units(key[1]) - shift, attempts[key])
            changed.add(key)
        # A rewritten block may sit in prompts that were right: they are counted again too.
        again = [keys for keys in prompts if keys in pending or not changed.isdisjoint(keys)]
        pending = await _off(book, again, oracle)
    book.checked, book.off = len(prompts), len(pending)
    book.exact = not pending


async def _off(
    book: BlockBook, prompts: list[list[BlockKey]], oracle: TokenOracle
) -> list[list[BlockKey]]:
    """The prompts whose count differs from their planned length."""
    counts = await oracle.count([book.prompt(keys) for keys in prompts])
    return [keys for keys, n in zip(prompts, counts, strict=True) if n != _planned(keys)]


async def _first_break(book: BlockBook, keys: list[BlockKey], oracle: TokenOracle) -> int:
    """The first block after which the prompt's prefix no longer counts as planned."""
    low, high = 0, len(keys) - 1
    while low < high:
        middle = (low + high) // 2
        (count,) = await oracle.count([book.prompt(keys[: middle + 1])])
        if count == _planned(keys[: middle + 1]):
            low = middle + 1
        else:
            high = middle
    return low


def _planned(keys: Sequence[BlockKey]) -> int:
    return sum(tokens for _, tokens in keys)

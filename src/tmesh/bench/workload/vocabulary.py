"""The pieces prompts are written with, and what each costs under the served model's tokenizer.

A piece is a word with its leading space (" river", " The") or a punctuation mark. Tokenizers cut
text into pre-tokens at spaces and punctuation before merging (byte-level BPE, tiktoken-style
regexes, SentencePiece with whitespace splitting), so the tokens of a sentence are the sum of its
pieces' costs, and a text of exactly N tokens can be planned before it exists. Costs are measured
once: a large vocabulary makes most common words one token, a small or byte-level one splits them
into several; both are fine, as long as the cost of each piece is known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tmesh.bench.workload.tokens import TokenOracle
from tmesh.bench.workload.words import FUNCTION_WORDS, STARTERS, WORDS

ANCHOR = "Document:"
"""Text every probe starts with: it absorbs start-of-text effects (a SentencePiece dummy prefix,
say) that a piece would never meet inside a context."""
PROBE_WORD = " notes"
PERIOD, COMMA = ".", ","
GROUP_SIZE = 16
MIN_TOPICS = 8


@dataclass(frozen=True)
class Vocabulary:
    """Words and sentence starters (with their leading space), and each piece's cost in units.

    With an exact oracle a unit is one token (`unit_tokens` 1). An approximate oracle cannot tell
    one piece's cost, so every piece is one unit and `unit_tokens` is the measured mean.
    """

    words: tuple[str, ...]
    starters: tuple[str, ...]
    cost: Mapping[str, int]
    unit_tokens: float
    exact: bool

    @property
    def topics(self) -> set[str]:
        """Words fit to be asked about (no "though" or "while"), unless too few remain."""
        content = {w[1:] for w in self.words} - FUNCTION_WORDS
        return content if len(content) >= MIN_TOPICS else {w[1:] for w in self.words}


async def measure_vocabulary(oracle: TokenOracle) -> Vocabulary:
    """Every candidate word and starter with its cost, and the cost of the period and comma."""
    words = [" " + w for w in WORDS]
    starters = [" " + w for w in STARTERS]
    if not oracle.exact:
        groups = _groups(words + starters, GROUP_SIZE)
        costs = await marginal_costs(oracle, ANCHOR, ["".join(g) for g in groups])
        per_piece = sum(costs) / sum(len(g) for g in groups)
        unit = dict.fromkeys([*words, *starters, PERIOD, COMMA], 1)
        return Vocabulary(tuple(words), tuple(starters), unit, max(per_piece, 0.1), False)
    cost = await piece_costs(oracle, words + starters)
    marks = await marginal_costs(oracle, ANCHOR + PROBE_WORD, [PERIOD, COMMA])
    cost.update({PERIOD: max(marks[0], 1), COMMA: max(marks[1], 1)})
    return Vocabulary(tuple(words), tuple(starters), cost, 1.0, True)


async def piece_costs(oracle: TokenOracle, candidates: list[str]) -> dict[str, int]:
    """The cost of each candidate, found by group testing.

    A group of k pieces that adds k tokens holds only one-token pieces (each adds at least one);
    failing groups are split in four and tried again, down to single pieces, whose cost is then
    read directly. A large vocabulary needs about `len(candidates) / GROUP_SIZE` texts; when most
    groups fail (a small vocabulary), splitting would cost more texts than it saves, so their
    pieces go one by one.
    """
    costs: dict[str, int] = {}
    groups = _groups(candidates, GROUP_SIZE)
    while groups:
        added = await marginal_costs(oracle, ANCHOR, ["".join(g) for g in groups])
        failed: list[list[str]] = []
        for group, cost in zip(groups, added, strict=True):
            if cost == len(group):
                costs.update(dict.fromkeys(group, 1))
            elif len(group) == 1:
                costs[group[0]] = max(cost, 1)
            else:
                failed.append(group)
        one_by_one = len(failed) * 2 > len(groups)
        groups = [
            part
            for group in failed
            for part in _groups(group, 1 if one_by_one else math.ceil(len(group) / 4))
        ]
    return costs


async def marginal_costs(oracle: TokenOracle, anchor: str, texts: list[str]) -> list[int]:
    """Tokens each text adds after `anchor`."""
    base, *counts = await oracle.count([anchor] + [anchor + text for text in texts])
    return [tokens - base for tokens in counts]


def _groups(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]

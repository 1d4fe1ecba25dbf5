"""Sentence-like filler of an exact cost: the body of every context, block and turn tmesh sends.

Pure functions of a random generator and a measured `Vocabulary`: sentences are drawn with random
lengths and words, summing their pieces' costs as they go; the last sentence is written to the
exact remainder (a small coin-change over the word costs), so a text of exactly N tokens exists
before any of it is counted. When a whole text is counted and differs (a merge across a word
boundary the costs did not foresee), `resize` rewrites its last sentences to the corrected budget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tmesh.bench.workload.vocabulary import COMMA, PERIOD, Vocabulary

TAIL_SPAN = 40
"""Units left for the exactly-sized last sentence, beyond the least it needs."""


@dataclass
class Filler:
    """Sentences and the planned cost of each, in the vocabulary's units."""

    sentences: list[str] = field(default_factory=list)
    costs: list[int] = field(default_factory=list)

    @property
    def cost(self) -> int:
        return sum(self.costs)

    @property
    def text(self) -> str:
        return "".join(self.sentences)


class Writer:
    """Writes filler from one vocabulary; the per-cost tables are built once."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.cost = vocab.cost
        self.words = list(vocab.words)
        self.starters = list(vocab.starters)
        self.by_cost: dict[int, list[str]] = {}
        for word in self.words:
            self.by_cost.setdefault(self.cost[word], []).append(word)
        self.period, self.comma = self.cost[PERIOD], self.cost[COMMA]
        heaviest_word = max(self.by_cost)
        self.tail_min = max(map(self.cost.__getitem__, self.starters)) + self.period
        self.tail_min += 2 * heaviest_word + self.comma

    def write(self, rng: random.Random, budget: int) -> Filler | None:
        """Sentences costing exactly `budget` units, or None when no combination of pieces does."""
        filler = Filler()
        left = budget
        while left > self.tail_min + TAIL_SPAN:
            sentence, cost = self._sentence(rng, left - self.tail_min)
            filler.sentences.append(sentence)
            filler.costs.append(cost)
            left -= cost
        while True:
            last = self.exact_sentence(rng, left)
            if last is not None:
                filler.sentences.append(last)
                filler.costs.append(left)
                return filler
            if not filler.costs:
                return None
            filler.sentences.pop()
            left += filler.costs.pop()

    def resize(self, rng: random.Random, filler: Filler, change: int) -> Filler | None:
        """`filler` with its last sentences rewritten so that it costs `change` units more."""
        keep = len(filler.costs)
        budget = change
        while keep and budget < self.tail_min:
            keep -= 1
            budget += filler.costs[keep]
        if budget < 0:
            return None
        tail = self.write(rng, budget)
        if tail is None:
            return None
        return Filler(filler.sentences[:keep] + tail.sentences, filler.costs[:keep] + tail.costs)

    def _sentence(self, rng: random.Random, limit: int) -> tuple[str, int]:
        """A random sentence of 6 to 18 words (one comma in most long ones), shortened to cost at
        most `limit`. Words are drawn in one `choices` call per sentence: a 32k-token context has
        ~2,500 sentences, and per-word calls would dominate the set-up time."""
        draw = rng.random
        length = 6 + int(draw() * 13)
        comma = 3 + int(draw() * (length - 5)) if length >= 8 and draw() < 0.6 else 0
        head = self.starters[int(draw() * len(self.starters))]
        body = rng.choices(self.words, k=length - 1)
        cost = self.cost[head] + sum(map(self.cost.__getitem__, body)) + self.period
        cost += self.comma if comma else 0
        while cost > limit and len(body) > 1:
            cost -= self.cost[body.pop()]
            if comma and comma > len(body) - 2:
                comma, cost = 0, cost - self.comma
        if comma:
            body.insert(comma - 1, COMMA)
        return head + "".join(body) + PERIOD, cost

    def exact_sentence(self, rng: random.Random, units: int) -> str | None:
        """One sentence costing exactly `units`: a starter, words (some followed by a comma when
        plain words cannot make the remainder) and a period; None if no such sentence exists."""
        room = units - self.period
        steps = sorted({*self.by_cost, *(cost + self.comma for cost in self.by_cost)})
        reach = self._reachable(room, steps)
        heads = [s for s in self.starters if self._last_words(room - self.cost[s], reach)]
        if not heads:
            return None
        head = rng.choice(heads)
        left = room - self.cost[head]
        last = rng.choice(self._last_words(left, reach))
        left -= self.cost[last]
        body: list[str] = []
        while left:
            plain = self._last_words(left, reach)
            if plain:
                word = rng.choice(plain)
            else:
                word = rng.choice(self._last_words(left - self.comma, reach)) + COMMA
                left -= self.comma
            body.append(word)
            left -= self.cost[word.rstrip(COMMA)]
        return head + "".join(body) + last + PERIOD

    def exact_words(self, rng: random.Random, units: int) -> str | None:
        """Words alone (no starter, no period) costing exactly `units`: a text too short for a
        sentence, such as a prompt's last partial block; None if no words add up to it."""
        reach = self._reachable(units, sorted(self.by_cost))
        if units < 0 or not reach[units]:
            return None
        words = []
        while units:
            word = rng.choice(self._last_words(units, reach))
            words.append(word)
            units -= self.cost[word]
        return "".join(words)

    def _last_words(self, units: int, reach: list[bool]) -> list[str]:
        """Words that can end a body of `units` (what precedes them is reachable)."""
        return [
            w for c in self.by_cost if 0 < c <= units and reach[units - c] for w in self.by_cost[c]
        ]

    @staticmethod
    def _reachable(units: int, steps: list[int]) -> list[bool]:
        """Which totals up to `units` some sequence of `steps` adds up to (0 by none)."""
        reach = [False] * (max(units, 0) + 1)
        reach[0] = True
        for total in range(1, len(reach)):
            reach[total] = any(step <= total and reach[total - step] for step in steps)
        return reach

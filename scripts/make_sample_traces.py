"""Write the two sample traces tmesh ships (src/tmesh/bench/workload/traces/), deterministically.

They are tmesh's own, shaped like the public ones: `mooncake-sample.jsonl` like Mooncake's
(timestamps in ms, 512-token blocks, no conversation fields) and `bailian-sample.jsonl` like
Alibaba Bailian's (timestamps in s, 16-token blocks, chat_id / parent_chat_id / turn / type).
Both mix conversations whose turns extend the previous prompt, requests that share one of a few
system prompts, and one-off requests; turns of a conversation are several requests apart, so a
replay with a few requests in flight never sends a turn before its previous one was answered.
Prompts stay under 7,000 tokens: the sample fits a model with an 8k context.

    python scripts/make_sample_traces.py
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "tmesh" / "bench" / "workload" / "traces"


@dataclass
class Ids:
    next_id: int = 0

    def fresh(self, count: int) -> list[int]:
        ids = list(range(self.next_id, self.next_id + count))
        self.next_id += count
        return ids


@dataclass
class Conversation:
    """A conversation: its prompt grows each turn; `ids` are its full blocks so far."""

    system: list[int]
    system_tokens: int
    length: int
    ids: list[int] = field(default_factory=list)
    turn: int = 0
    chat_id: int = -1


def _request(conv: Conversation, grow: int, block: int, ids: Ids) -> tuple[int, list[int]]:
    """The next turn: the shared full blocks of the previous prompt, then new blocks."""
    conv.length += grow
    kept = conv.ids[: conv.length // block] if conv.ids else list(conv.system)
    total = -(-conv.length // block)
    full = conv.length // block
    hash_ids = kept + ids.fresh(total - len(kept))
    conv.ids = hash_ids[:full]
    conv.turn += 1
    return conv.length, hash_ids


def _requests(rng: random.Random, block: int, count: int) -> list[dict[str, object]]:
    ids = Ids()
    systems = []
    for tokens in (3 * block if block > 64 else 640, 2 * block if block > 64 else 400):
        systems.append((ids.fresh(tokens // block), tokens // block * block))
    conversations: list[Conversation] = []
    rows: list[dict[str, object]] = []
    recent: list[Conversation] = []
    for chat in range(count):
        ready = [c for c in conversations if c not in recent[-4:] and c.length < 5000]
        choice = rng.random()
        if ready and choice < 0.5:
            conv = rng.choice(ready)
            parent = conv.chat_id
            length, hash_ids = _request(conv, rng.randint(300, 1200), block, ids)
        elif choice < 0.85 and len(conversations) < 8:
            system, tokens = rng.choice(systems)
            conv = Conversation(system, tokens, tokens)
            conversations.append(conv)
            parent = -1
            length, hash_ids = _request(conv, rng.randint(200, 1500), block, ids)
        else:
            conv = Conversation([], 0, 0)
            parent = -1
            length, hash_ids = _request(conv, rng.randint(300, 4000), block, ids)
        recent.append(conv)
        conv.chat_id = chat
        rows.append(
            {
                "chat_id": chat,
                "parent_chat_id": parent,
                "turn": conv.turn,
                "input_length": length,
                "output_length": rng.randint(16, 64),
                "hash_ids": hash_ids,
            }
        )
    return rows


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random("tmesh-sample-mooncake")
    clock = 0.0
    with (OUT / "mooncake-sample.jsonl").open("w") as out:
        for row in _requests(rng, 512, 48):
            clock += rng.expovariate(1 / 1.2)
            line = {"timestamp": round(clock * 1000)}
            line.update({k: row[k] for k in ("input_length", "output_length", "hash_ids")})
            out.write(json.dumps(line, separators=(", ", ": ")) + "\n")
    rng = random.Random("tmesh-sample-bailian")
    clock = 0.0
    with (OUT / "bailian-sample.jsonl").open("w") as out:
        for row in _requests(rng, 16, 40):
            clock += rng.expovariate(1 / 1.5)
            line = {k: row[k] for k in ("chat_id", "parent_chat_id")}
            line.update({"timestamp": round(clock, 3)})
            line.update({k: row[k] for k in ("input_length", "output_length")})
            line.update({"type": "text", "turn": row["turn"], "hash_ids": row["hash_ids"]})
            out.write(json.dumps(line, separators=(", ", ": ")) + "\n")


if __name__ == "__main__":
    main()

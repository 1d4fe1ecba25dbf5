"""Set-up time and memory of a trace replay: the texts of every block, checked by counting whole
prompts, for a synthetic Mooncake-shaped trace (512-token blocks, conversations sharing prefixes).

Counts are exact, from a byte-level BPE trained here on local text (or a real `--tokenizer`).
Prints the wall and CPU time, the distinct blocks written, the prompts counted and the peak RSS.

    .venv/bin/python benchmarks/trace_blocks.py [--requests 2000] [--tokenizer PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def synthetic_trace(path: Path, requests: int) -> None:
    """Conversations of up to 12 turns over 8 system prompts, each turn 300-2,000 tokens more."""
    rng = random.Random(0)
    next_id = 0

    def fresh(count: int) -> list[int]:
        nonlocal next_id
        next_id += count
        return list(range(next_id - count, next_id))

    systems = [fresh(4) for _ in range(8)]
    live: list[tuple[list[int], int]] = []
    with path.open("w") as out:
        for index in range(requests):
            if live and rng.random() < 0.6:
                slot = rng.randrange(len(live))
                ids, length = live[slot]
            else:
                slot, ids, length = -1, list(rng.choice(systems)), 2048
            length += rng.randint(300, 2000)
            kept = ids[: length // 512]
            hash_ids = kept + fresh(-(-length // 512) - len(kept))
            entry = (hash_ids[: length // 512], length)
            if slot < 0:
                live.append(entry)
            elif length > 30000:
                live.pop(slot)
            else:
                live[slot] = entry
            row = {"timestamp": index * 100, "input_length": length, "output_length": 50,
                   "hash_ids": hash_ids}  # fmt: skip
            out.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tokenizer")
    args = parser.parse_args()
    from tmesh.bench.workload.replay import prepare_replay
    from tmesh.bench.workload.tokens import LocalTokenizer
    from tmesh.bench.workload.trace import load_trace

    with tempfile.TemporaryDirectory() as folder:
        trace_path = Path(folder) / "trace.jsonl"
        synthetic_trace(trace_path, args.requests)
        tokenizer = args.tokenizer
        if tokenizer is None:
            from tokenizer_helpers import train_bpe

            tokenizer = str(train_bpe(Path(folder) / "tokenizer.json", 3000))
        trace = load_trace(trace_path)
        wall, cpu = time.perf_counter(), time.process_time()
        replay = asyncio.run(prepare_replay(trace, LocalTokenizer(tokenizer)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    book = replay.book
    tokens = sum(n for _, n in book.texts)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{len(trace.requests)} requests, {sum(r.input_length for r in trace.requests):,} prompt "
        f"tokens, {len(book.texts):,} distinct blocks ({tokens:,} tokens): {wall:.1f} s wall, "
        f"{cpu:.1f} s CPU, {book.checked} prompts counted whole, {book.off} off, "
        f"peak RSS {peak:.0f} MB"
    )


if __name__ == "__main__":
    main()

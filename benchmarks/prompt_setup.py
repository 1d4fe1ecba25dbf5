"""Set-up time and memory for the seed's prompt set: 61 contexts x 32,000 tokens, 61 questions each.

Each case runs in its own process so its peak RSS is its own:
  (a) exact counts from a byte-level BPE `tokenizer.json` (trained here on local text, or given
      with --tokenizer, e.g. a real model's), and
  (b) the length estimate, the oracle of last resort.
Target (issue 8): <= 3 s and <= 150 MB peak RSS. The machine is shared, so CPU seconds are printed
beside wall seconds, and the load average with them.

    .venv/bin/python benchmarks/prompt_setup.py [--tokenizer PATH] [--contexts 61] [--length 32000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


class Timed:
    """The oracle under test, with the calls, texts and wall time spent counting."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.exact = inner, inner.name, inner.exact
        self.calls = self.texts = 0
        self.seconds = 0.0

    async def count(self, texts: list[str]) -> list[int]:
        started = time.perf_counter()
        counts = await self.inner.count(texts)
        self.calls, self.texts = self.calls + 1, self.texts + len(texts)
        self.seconds += time.perf_counter() - started
        return counts


def run_case(oracle_kind: str, tokenizer: str | None, contexts: int, length: int) -> None:
    from tmesh.bench.workload.prompts import build_prompt_set
    from tmesh.bench.workload.tokens import LengthEstimate, LocalTokenizer
    from tmesh.results.records import WorkloadSpec

    spec = WorkloadSpec("bench", contexts, contexts, max(1, contexts // 3), length, 100)
    wall, cpu = time.perf_counter(), time.process_time()
    oracle = Timed(LocalTokenizer(tokenizer) if oracle_kind == "tokenizer" else LengthEstimate())
    prompts = asyncio.run(build_prompt_set(spec, oracle))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    on_target = sum(t == length for t in prompts.context_tokens)
    text_mb = sum(map(len, prompts.contexts)) / 1e6
    print(
        f"{oracle_kind:9}  {wall:6.2f} s wall  {cpu:6.2f} s CPU  peak RSS {peak_mb:6.1f} MB  "
        f"exact={prompts.exact}  {on_target}/{contexts} contexts at {length} tokens\n"
        f"           {oracle.calls} count calls, {oracle.texts} texts, {oracle.seconds:.2f} s "
        f"in counts (overlapping the writing); {text_mb:.1f} MB of text; "
        f"oracle: {prompts.oracle}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", help="a tokenizer.json to use instead of a trained one")
    parser.add_argument("--contexts", type=int, default=61)
    parser.add_argument("--length", type=int, default=32000)
    parser.add_argument("--case", choices=["tokenizer", "estimate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.tokenizer, args.contexts, args.length)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = args.tokenizer
        if tokenizer is None:
            from tokenizer_helpers import train_bpe

            tokenizer = str(train_bpe(Path(tmp) / "tokenizer.json", 3000))
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{args.contexts} contexts x {args.length} tokens; load average {load}")
        for case in ("tokenizer", "estimate"):
            command = [sys.executable, __file__, "--case", case, "--tokenizer", tokenizer]
            command += ["--contexts", str(args.contexts), "--length", str(args.length)]
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()

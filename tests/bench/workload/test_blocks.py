"""Block texts: every prompt of a trace exactly its input length under real BPE tokenizers, the
same id the same text everywhere, siblings parting at their first token, and the fixes for a
tokenizer whose start of text or seams do not add up."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizer_helpers import train_bpe
from tokenizers import Tokenizer

from tmesh.bench.workload.blocks import BlockKey, build_blocks, prompt_blocks
from tmesh.bench.workload.tokens import LocalTokenizer
from tmesh.bench.workload.trace import load_trace
from tmesh.bench.workload.vocabulary import measure_vocabulary


def _prompts(name: str, count: int) -> list[list[BlockKey]]:
    trace = load_trace(Path(name))
    return [
        prompt_blocks(r.hash_ids, r.input_length, trace.block_size) for r in trace.requests[:count]
    ]


def test_prompt_blocks_end_with_the_partial_remainder() -> None:
    assert prompt_blocks([4, 5, 6], 1100, 512) == [(4, 512), (5, 512), (6, 76)]
    assert prompt_blocks([4, 5], 1024, 512) == [(4, 512), (5, 512)]


@pytest.mark.parametrize(("name", "count"), [("sample:mooncake", 12), ("sample:bailian", 12)])
async def test_every_prompt_is_exactly_its_input_length(
    bpe: Tokenizer, bpe_path: Path, name: str, count: int
) -> None:
    oracle = LocalTokenizer(str(bpe_path))
    prompts = _prompts(name, count)
    book = await build_blocks(prompts, oracle, await measure_vocabulary(oracle), seed=3)
    assert book.exact and book.checked == len({tuple(p) for p in prompts}) and book.off == 0
    for keys in prompts:
        text = book.prompt(keys)
        assert len(bpe.encode(text, add_special_tokens=False).ids) == sum(n for _, n in keys)
    for key, text in book.texts.items():
        assert len(bpe.encode(text, add_special_tokens=False).ids) == key[1], key


async def test_a_small_vocabulary_still_adds_up(tmp_path: Path) -> None:
    """1000 entries: many words cost several tokens, yet every prompt is exact."""
    path = train_bpe(tmp_path / "tokenizer.json", 1000)
    oracle = LocalTokenizer(str(path))
    prompts = _prompts("sample:bailian", 10)
    book = await build_blocks(prompts, oracle, await measure_vocabulary(oracle), seed=0)
    tokenizer = Tokenizer.from_file(str(path))
    for keys in prompts:
        ids = tokenizer.encode(book.prompt(keys), add_special_tokens=False).ids
        assert len(ids) == sum(n for _, n in keys)


async def test_siblings_part_at_their_first_token(bpe: Tokenizer, bpe_path: Path) -> None:
    oracle = LocalTokenizer(str(bpe_path))
    parent: BlockKey = (1, 16)
    prompts = [[parent, (child, 16)] for child in range(2, 12)]
    book = await build_blocks(prompts, oracle, await measure_vocabulary(oracle), seed=0)
    firsts = [bpe.encode(book.texts[keys[1]], add_special_tokens=False).ids[0] for keys in prompts]
    assert len(set(firsts)) == len(firsts)
    again = await build_blocks(prompts, oracle, await measure_vocabulary(oracle), seed=0)
    assert again.texts == book.texts


class _Shifted(LocalTokenizer):
    """A tokenizer that adds a token at the start of every text (a dummy prefix) and merges
    `seam` into one token fewer wherever it occurs."""

    def __init__(self, path: Path, start: int, seam: str | None = None) -> None:
        super().__init__(str(path))
        self.start, self.seam = start, seam

    def count_now(self, texts: list[str]) -> list[int]:
        counts = super().count_now(texts)
        return [
            n + self.start - (text.count(self.seam) if self.seam else 0)
            for n, text in zip(counts, texts, strict=True)
        ]


async def test_a_token_added_at_the_start_of_the_text_is_planned_for(bpe_path: Path) -> None:
    oracle = _Shifted(bpe_path, start=1)
    prompts = _prompts("sample:mooncake", 6)
    book = await build_blocks(prompts, oracle, await measure_vocabulary(oracle), seed=0)
    assert book.exact
    counts = await oracle.count([book.prompt(keys) for keys in prompts])
    assert counts == [sum(n for _, n in keys) for keys in prompts]


async def test_a_seam_that_merges_is_rewritten(bpe_path: Path) -> None:
    plain = LocalTokenizer(str(bpe_path))
    prompts = [[(1, 40), (2, 40), (3, 40)], [(1, 40), (4, 40)]]
    first = await build_blocks(prompts, plain, await measure_vocabulary(plain), seed=0)
    assert first.texts[(1, 40)].endswith(".")
    seam = ". " + first.texts[(2, 40)].split()[0]
    oracle = _Shifted(bpe_path, start=0, seam=seam)
    book = await build_blocks(prompts, oracle, await measure_vocabulary(oracle), seed=0)
    assert book.exact
    assert book.texts[(2, 40)] != first.texts[(2, 40)]
    counts = await oracle.count([book.prompt(keys) for keys in prompts])
    assert counts == [120, 80]
